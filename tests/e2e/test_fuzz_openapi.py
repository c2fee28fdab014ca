"""Every service's OpenAPI, fuzzed (schemathesis): no 5xx ever, and no undocumented status.

For each operation of each service, schemathesis generates requests from the service's own
OpenAPI document: valid ones (positive) and ones that break the schema somewhere (negative),
without the admin token and with it, and sends them to the running service. Two checks hold
on every answer: it is not a server error, and its status is one the operation documents.

The fuzzer runs against a system of its own: with the token it injects faults (a 10-minute
delay, a permanent failure of every event) and creates accounts, stock and orders, which
must not reach the session's system the other tests share. Even so it never arms ``crash``
(a process that exits makes the next requests fail for no fault of the API) nor a delay
longer than a second (a handler asleep for minutes holds up the services' shutdown).

Bounded in time: a number of examples per operation, no shrinking, and a time budget shared
out among the operations: one that has used its share stops early (a slow machine fuzzes
less, it does not fail), and the test says how many did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.e2e.conftest import SERVICES, RunningSystem, running_system
from tests.infra import Infrastructure

EXAMPLES_PER_OPERATION = 25
"""Per operation, generation mode and caller: 40 operations x 3 runs x 25 ~ 3000 requests."""
BUDGET_S = 90.0
"""For the whole run (about 40 s on an idle 2-core machine), shared out among the operations."""
RUNS_PER_OPERATION = 3
"""Every operation positive and negative with the token, positive without it: without it an
admin route answers 401 before it looks at its input, so a negative case finds nothing more."""
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
REQUEST_TIMEOUT_S = 10.0
CHECKS = [not_a_server_error, status_code_conformance]
READINESS = "GET /readyz"
"""Its documented 503 is an answer, not an error: a database too slow to answer its probe in
2 s (a busy machine) makes the service not ready. Its status must still be documented."""
LONGEST_DELAY_MS = 1000


class OutOfTime(Exception):
    """An operation used its share of ``BUDGET_S``: the examples sent so far are its run."""


@pytest.fixture(scope="module")
async def fuzzed(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    async with running_system(infra, tmp_path_factory.mktemp("fuzzed")) as running:
        yield running


def harmless(case: Case) -> bool:
    """False for a request that would arm a crash or a long delay (module docstring)."""
    body = case.body
    if not isinstance(body, dict):
        return True
    if body.get("kind") == "crash":
        return False
    delay = body.get("delay_ms")
    return not (body.get("kind") == "delay" and isinstance(delay, int) and delay > LONGEST_DELAY_MS)


def checks_for(case: Case) -> list[Any]:
    if case.operation.label == READINESS:
        return [status_code_conformance]
    return CHECKS


def fuzz_operation(
    case_strategy: Any, base_url: str, headers: dict[str, str], deadline: float
) -> None:
    """Send ``EXAMPLES_PER_OPERATION`` generated requests; raise on the first that fails."""

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each step is a request
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        # The failure itself is raised; without this, Hypothesis also prints how to
        # reproduce an operation that has nothing a negative case could break.
        verbosity=Verbosity.quiet,
    )
    @given(case=case_strategy)
    def run(case: Case) -> None:
        if time.monotonic() > deadline:
            raise OutOfTime
        response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        case.validate_response(response, checks=checks_for(case))

    run()


@dataclass
class Report:
    """What a fuzzing run did and found."""

    deadline: float
    planned: int
    """How many runs there are to share the time among."""
    runs: int = 0
    cut_short: int = 0
    failures: list[str] = field(default_factory=list)

    def next_slice(self) -> float:
        """When the next run must stop: an equal share of the time left among the runs left
        (runs that finish early leave their time to the others)."""
        now = time.monotonic()
        return now + max(self.deadline - now, 0.0) / max(self.planned - self.runs, 1)


def fuzz_service(
    base_url: str,
    headers: dict[str, str],
    caller: str,
    modes: tuple[GenerationMode, ...],
    report: Report,
) -> None:
    """Fuzz every operation of the service at ``base_url`` in each of ``modes``."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode).filter(harmless)
            stop_at = report.next_slice()
            report.runs += 1
            try:
                fuzz_operation(strategy, base_url, headers, stop_at)
            except Unsatisfiable:
                # Nothing to break: no parameters and no body (GET /healthz), or only
                # headers, which a negative case cannot make invalid.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except OutOfTime:
                report.cut_short += 1
            except Exception as failure:
                label = f"{base_url} {operation.label} ({mode.value}, {caller})"
                report.failures.append(f"{label}:\n{failure}")


def fuzz_everything(urls: dict[str, str], token: str, planned: int) -> Report:
    both = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    callers = {
        "with the admin token": ({"Authorization": f"Bearer {token}"}, both),
        "without the admin token": ({}, (GenerationMode.POSITIVE,)),
    }
    report = Report(deadline=time.monotonic() + BUDGET_S, planned=planned)
    for caller, (headers, modes) in callers.items():
        for url in urls.values():
            fuzz_service(url, headers, caller, modes, report)
    return report


async def test_no_request_gets_a_server_error_or_an_undocumented_status(
    fuzzed: RunningSystem,
) -> None:
    urls = {service: fuzzed.env[f"SAGAKIT_{service.upper()}_URL"] for service in SERVICES}
    token = fuzzed.env["SAGAKIT_ADMIN_TOKEN"]

    # Every operation the four services document, so the count below proves none was skipped.
    operations = 0
    for url in urls.values():
        paths = (await fuzzed.client.http.get(f"{url}/openapi.json")).json()["paths"]
        operations += sum(1 for item in paths.values() for method in item if method in HTTP_METHODS)

    started = time.monotonic()
    # In a thread: schemathesis sends with requests, which would block the event loop.
    planned = RUNS_PER_OPERATION * operations
    report = await asyncio.to_thread(fuzz_everything, urls, token, planned)

    print(
        f"fuzzed {report.runs} operations and modes in {time.monotonic() - started:.0f} s, "
        f"{report.cut_short} of them stopped early by the time budget"
    )
    assert report.runs == planned
    assert not report.failures, "\n\n".join(report.failures)
