"""A chaos run's report: the verification table (rich) and the JSON document beside it."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_report", "render", "verify_table", "write_report"]

EXAMPLES_SHOWN = 3


def verify_table(verify: Mapping[str, Any]) -> Table:
    """One row per invariant: what it looked at, how many violations, the first few."""
    table = Table(title="verify", title_justify="left")
    table.add_column("check")
    table.add_column("checked", justify="right")
    table.add_column("violations", justify="right")
    table.add_column("first violations / note", overflow="fold")
    for check in verify["checks"]:
        note = check["skipped"] and f"skipped: {check['skipped']}"
        note = note or "\n".join(check["examples"][:EXAMPLES_SHOWN])
        count = check["violations"]
        table.add_row(
            check["name"],
            str(check["checked"]),
            f"[red]{count}[/red]" if count else "[green]0[/green]",
            note,
        )
    return table


def faults_table(doc: Mapping[str, Any]) -> Table:
    """Per fault kind: how many struck, their targets, and the longest recovery."""
    table = Table(title="faults injected", title_justify="left")
    for column in ("kind", "count", "targets", "longest recovery"):
        table.add_column(column, justify="right" if column == "count" else "left")
    kinds: dict[str, list[Mapping[str, Any]]] = {}
    for fault in doc["faults"]:
        kinds.setdefault(fault["kind"], []).append(fault)
    for kind, faults in kinds.items():
        struck = [f for f in faults if f["error"] is None]
        recoveries = [f["recovered_s"] for f in struck if f["recovered_s"] is not None]
        targets = sorted({str(f["detail"].get("target") or f["target"]) for f in struck})
        failed = len(faults) - len(struck)
        table.add_row(
            kind,
            str(len(struck)) + (f" ([red]{failed} failed[/red])" if failed else ""),
            ", ".join(targets),
            f"{max(recoveries):.1f} s" if recoveries else "-",
        )
    for kind, count in doc["business_faults_injected"].items():
        table.add_row(f"{kind} (business)", str(count), "via POST /faults", "-")
    for kind, reason in doc["skipped_fault_kinds"].items():
        table.add_row(kind, "skipped", reason, "-")
    return table


def print_report(doc: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    placement, verify = doc["placement"], doc["verify"]
    console.print(
        f"chaos run {doc['run_id']} ({doc['config'].get('profile') or 'your system'}): "
        f"{placement['accepted']} sagas accepted of {doc['config']['orders']} "
        f"in {placement['seconds']:.0f} s, {placement['retries']} requests sent again, "
        f"refused {placement['refused'] or 'none'}; {doc['elapsed_s']:.0f} s in all"
    )
    console.print(f"outcomes: {verify['outcomes']}")
    console.print(faults_table(doc))
    console.print(verify_table(verify))
    settled = "settled" if verify["settled"] else "[red]did not settle[/red]"
    verdict = "[green]OK[/green]" if doc["ok"] else "[red]FAILED[/red]"
    console.print(
        f"{verdict}: {verify['violations']} violation(s); {settled} "
        f"{verify['settle_s']:.0f} s after the last fault"
        + "".join(f"\nerror: {error}" for error in doc["errors"])
    )


def render(doc: Mapping[str, Any], width: int = 120) -> str:
    """The report as plain text (for tests and logs)."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_report(doc, console)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def write_report(doc: Mapping[str, Any], folder: Path) -> Path:
    """``<folder>/<UTC start time>.json``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    started = datetime.fromisoformat(str(doc["started_at"])).astimezone(UTC)
    path = folder / f"{started.strftime('%Y-%m-%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
