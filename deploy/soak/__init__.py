"""``make soak``: the system under sustained load for half an hour or more, every series
sampled, and a verdict on what grows.

A soak meets what short runs never do: retention purges running hundreds of times, keys and
rows that should expire, replays repeated, latency drifting as tables fill. ``run`` starts
the ``soak`` profile's stack with the retention windows compressed from days to seconds,
offers orders steadily (``load``) with the business mix of ``make chaos`` while it samples
everything every 10 s (``sampler``, ``probes``) and replays dead letters (``poison``), then
runs ``verify`` and judges growth (``verdict``); ``report`` prints the table and writes the
JSON and a PNG to ``soak/results/``.
"""

from deploy.soak.config import SoakConfig
from deploy.soak.run import run_soak, soak

__all__ = ["SoakConfig", "run_soak", "soak"]
