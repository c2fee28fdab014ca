"""The latency distributions of a run as one PNG: the API's on the left, the sagas' (and the
transport's chains') on the right, each as percentile against milliseconds on a log scale,
drawn from the results document's ``curve_ms`` points."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["can_plot", "plot"]

Curve = tuple[str, Sequence[Sequence[float]]]


def can_plot() -> bool:
    """Whether matplotlib is installed (``pip install -e '.[bench]'``, as make bench does)."""
    return importlib.util.find_spec("matplotlib") is not None


def _curve(label: str, summary: Mapping[str, Any] | None) -> list[Curve]:
    return [(label, summary["curve_ms"])] if summary else []


def _curves(scenarios: Mapping[str, Any]) -> tuple[list[Curve], list[Curve]]:
    api: list[Curve] = []
    sagas: list[Curve] = []
    if closed := scenarios.get("closed_loop"):
        api += _curve("closed loop", closed["api_latency"])
        sagas += _curve("closed loop", closed["sagas"]["latency"])
    for step in scenarios.get("open_loop") or []:
        if not step.get("failed"):
            label = f"open loop {step['offered_per_s']:g}/s"
            api += _curve(label, step["api_latency"])
            sagas += _curve(label, step["sagas"]["latency"])
    if sync := scenarios.get("synchronous"):
        api += _curve("synchronous chain", sync["latency"])
        sagas += _curve("synchronous chain", sync["latency"])
    if transport := scenarios.get("transport"):
        sagas += _curve("transport, loaded", transport["chain_latency"])
        sagas += _curve("transport, one at a time", transport["unloaded_chain_latency"])
    return api, sagas


def plot(doc: Mapping[str, Any], path: Path) -> None:
    """Write the PNG of ``doc``'s distributions to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot

    api, sagas = _curves(doc.get("scenarios", {}))
    figure, axes = pyplot.subplots(1, 2, figsize=(14, 6), sharey=True)
    panels = (("API latency (order accepted)", api), ("saga latency (order completed)", sagas))
    for axis, (title, curves) in zip(axes, panels, strict=True):
        for label, points in curves:
            axis.plot([p[1] for p in points], [p[0] for p in points], label=label)
        axis.set_xscale("log")
        axis.set_xlabel("milliseconds (log scale)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        if curves:
            axis.legend(fontsize="small", loc="best")
    axes[0].set_ylabel("percentile")
    commit = str(doc.get("commit", {}).get("sha"))[:10]
    figure.suptitle(f"sagakit bench {doc.get('started_at')}, commit {commit}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
