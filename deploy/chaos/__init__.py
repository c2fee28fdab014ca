"""Chaos testing of a sagakit system, and the verification of its invariants.

``run_chaos(config)`` places a mix of orders (every business outcome) while service
instances, the broker, Redis and PostgreSQL are killed on a schedule, then calls
``verify(endpoints, manifest)``: every saga terminal, money and stock conserved, no double
effect, statuses that agree. ``python -m deploy.chaos run|verify`` is its command line.

| module | what |
| --- | --- |
| workload.py | the order mix and its placement |
| business.py | the injected business failures, kept on every instance |
| schedule.py | when each infrastructure fault strikes |
| actions.py | the faults acted out on a local stack's processes |
| snapshot.py, checks.py, verify.py | reading where things stand, the invariants, verify |
| report.py | the table and the JSON |
"""

from deploy.chaos.checks import CheckResult
from deploy.chaos.config import ChaosConfig
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.manifest import Manifest
from deploy.chaos.run import ChaosReport, run_chaos
from deploy.chaos.verify import VerifyReport, verify

__all__ = [
    "ChaosConfig",
    "ChaosReport",
    "CheckResult",
    "Endpoints",
    "Manifest",
    "VerifyReport",
    "run_chaos",
    "verify",
]
