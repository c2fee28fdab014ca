"""Where a run's results go: ``<results_dir>/<UTC start time>.json`` and the plot beside it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.plot import can_plot, plot

__all__ = ["write_results"]


def write_results(doc: Mapping[str, Any], folder: Path) -> tuple[Path, Path | None]:
    """Write the JSON and, when matplotlib is installed, the PNG; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    started = datetime.fromisoformat(str(doc["started_at"])).astimezone(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    data = folder / f"{stamp}.json"
    data.write_text(json.dumps(doc, indent=1) + "\n")
    if not can_plot():
        return data, None
    picture = data.with_suffix(".png")
    plot(doc, picture)
    return data, picture
