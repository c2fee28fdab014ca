"""A soak run's report: the table (rich), the JSON document and a PNG of the series."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deploy.chaos.report import verify_table
from deploy.soak.verdict import series

__all__ = ["plot", "print_report", "render", "write_report"]


def checks_table(doc: Mapping[str, Any]) -> Table:
    table = Table(title="soak verdict", title_justify="left")
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    for check in doc["checks"]:
        mark = "[green]ok[/green]" if check["ok"] else "[red]FAIL[/red]"
        table.add_row(check["name"], mark, check["detail"])
    return table


def print_report(doc: Mapping[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    load, config = doc["load"], doc["config"]
    console.print(
        f"soak {doc['run_id']} ({config['profile']}): {load['accepted']} orders accepted of "
        f"{doc['orders']} offered at {config['rate']:g}/s for {config['minutes']:g} min, "
        f"given up {load['given_up'] or 'none'}, answers {load['codes']}; "
        f"{len(doc['samples'])} samples every {config['sample_s']:g} s; "
        f"{doc['elapsed_s']:.0f} s in all"
    )
    console.print(f"outcomes: {doc['verify']['outcomes']}")
    console.print(f"dead letters: {doc['dead_letters']}")
    if doc["growth_bytes_per_saga"]:
        grown = ", ".join(f"{t} {b} B" for t, b in doc["growth_bytes_per_saga"].items())
        console.print(f"growth per saga after the warm-up: {grown}")
    console.print(verify_table(doc["verify"]))
    console.print(checks_table(doc))
    verdict = "[green]OK[/green]" if doc["ok"] else "[red]FAILED[/red]"
    console.print(verdict + "".join(f"\nerror: {error}" for error in doc["errors"]))


def render(doc: Mapping[str, Any], width: int = 140) -> str:
    """The report as plain text (for tests and logs)."""
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_report(doc, console)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def _stem(doc: Mapping[str, Any]) -> str:
    started = datetime.fromisoformat(str(doc["started_at"])).astimezone(UTC)
    return started.strftime("%Y-%m-%dT%H%M%SZ")


def write_report(doc: Mapping[str, Any], folder: Path) -> Path:
    """``<folder>/<UTC start time>.json``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_stem(doc)}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def plot(doc: Mapping[str, Any], folder: Path) -> Path:
    """``<folder>/<UTC start time>.png``: every series over the run, one panel a subject."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = doc["samples"]
    minutes = [s["t_s"] / 60 for s in samples]

    def line(axis: Any, label: str, pick: Any) -> None:
        points = [(m, v) for m, s in zip(minutes, samples, strict=True) for v in series([s], pick)]
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], label=label)

    figure, axes = plt.subplots(3, 2, figsize=(14, 12), sharex=True)
    (memory, redis), (tables, backlog), (latency, throughput) = axes
    processes = sorted({p for s in samples for p in s.get("processes", {})})
    for process in processes:
        line(memory, process, lambda s, p=process: s["processes"][p]["rss_mb"])
    memory.set_title("resident memory (MB; PostgreSQL: proportional)")
    line(redis, "used MB", lambda s: s["redis"]["used_mb"])
    redis_keys = redis.twinx()
    line(redis_keys, "keys", lambda s: s["redis"]["keys"])
    redis.set_title("Redis: memory (MB, left) and keys (right)")
    names = sorted({t for s in samples for t in s.get("tables") or {}})
    for table in names:
        line(tables, table, lambda s, t=table: s["tables"][t]["rows"])
    tables.set_yscale("symlog")
    tables.set_title("table rows (PostgreSQL's estimate)")
    line(backlog, "outbox unsent rows", lambda s: s["outbox"]["unsent"])
    line(backlog, "consumer lag (records)", lambda s: s["metrics"]["lag"])
    line(backlog, "records in dead-letter topics", lambda s: s["metrics"]["dlq_records"])
    backlog.set_title("backlogs")
    line(latency, "saga p50", lambda s: s["sagas"]["p50_ms"])
    line(latency, "saga p99", lambda s: s["sagas"]["p99_ms"])
    line(latency, "API p99", lambda s: s["api"]["p99_ms"])
    latency.set_title(f"latency per {doc['config']['sample_s']:g} s window (ms)")
    line(throughput, "sagas completed", lambda s: s["sagas"]["completed"])
    line(throughput, "API answers", lambda s: s["api"]["answers"])
    throughput.set_title(f"per {doc['config']['sample_s']:g} s window")
    for axis in axes.flat:
        axis.legend(fontsize="x-small", loc="upper left")
        axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("minutes")
    figure.suptitle(f"soak {doc['run_id']}: {doc['orders']} orders at {doc['config']['rate']:g}/s")
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_stem(doc)}.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
