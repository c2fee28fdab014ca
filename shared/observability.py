"""Logs and metrics: one log format for every service, and the Prometheus text format.

Metrics are plain counters and gauges that components already keep (the consumer runner's
counts, the relay's backlog); ``render_metrics`` turns them into the text Prometheus scrapes,
so no metrics library runs on the hot path.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Sample", "configure_logging", "render_metrics"]


def configure_logging(service: str, instance_id: str, level: str = "INFO") -> None:
    """Plain one-line logs on stderr, each naming the service instance that wrote it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {service}[{instance_id}] %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every coordinator hiccup at ERROR/WARNING during normal rebalances.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric value with its labels."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: str = "counter"
    help: str = ""


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in sorted(labels.items())
    )
    return "{" + ",".join(escaped) + "}"


def render_metrics(samples: Iterable[Sample]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of ``samples``."""
    lines: list[str] = []
    described: set[str] = set()
    for sample in sorted(samples, key=lambda s: s.name):
        if sample.name not in described:
            described.add(sample.name)
            if sample.help:
                lines.append(f"# HELP {sample.name} {sample.help}")
            lines.append(f"# TYPE {sample.name} {sample.kind}")
        lines.append(f"{sample.name}{_labels(sample.labels)} {sample.value:g}")
    return "\n".join(lines) + "\n"
