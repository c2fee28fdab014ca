"""``up``, ``down`` and ``status`` over the stack's components, in order."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.localstack import prereqs
from deploy.localstack.cluster import Topology
from deploy.localstack.component import Component, Context, StatusRow
from deploy.localstack.errors import StackError
from deploy.localstack.kafka import Kafka
from deploy.localstack.postgres import Postgres
from deploy.localstack.profiles import PROFILES
from deploy.localstack.record import Leases, StartedRecord, state_lock
from deploy.localstack.redis import Redis
from deploy.localstack.services import Services
from deploy.localstack.stackenv import admin_token, write_stack_env

__all__ = ["COMPONENTS", "UpReport", "down", "status", "up"]

# Started in this order, stopped in the reverse one. A new part of the stack is a module with
# a class shaped like component.Component, added here.
COMPONENTS: tuple[Component, ...] = (Kafka(), Postgres(), Redis(), Services())


@dataclass(frozen=True)
class UpReport:
    """What ``up`` did: the stack.env values, and which components this call started."""

    env: dict[str, str]
    env_file: Path
    started: tuple[str, ...]


def up(
    profile: str = "dev",
    environ: Mapping[str, str] | None = None,
    *,
    lease: int | None = None,
    kafka: Topology | None = None,
) -> UpReport:
    """Start what is not running yet and return once every component answers.

    ``kafka`` chooses the local Kafka's brokers and authentication (default: whatever runs,
    else one broker without authentication).

    Prerequisites of everything that must start are checked first, all at once. If starting
    fails half-way, what this call started is stopped again, so a failed ``up`` leaves
    nothing behind. A test session passes its pid as ``lease`` and gives it back to
    :func:`down` when it ends.
    """
    ctx = _context(profile, environ, kafka)
    began = time.monotonic()
    env_file = ctx.profile.state_dir / "stack.env"
    with state_lock(ctx.profile.state_dir):
        record = StartedRecord(ctx.profile.state_dir)
        leases = Leases(ctx.profile.state_dir)
        started: list[Component] = []
        try:
            if lease is not None:
                leases.take(lease)
            plans = [(component, component.plan(ctx)) for component in COMPONENTS]
            prereqs.ensure(plan.needs for _, plan in plans if plan.action == "start")
            env = _write_stack_env(ctx, env_file)
            for component, plan in plans:
                if plan.action == "start":
                    # Recorded first: a start that fails half-way is stopped like the others.
                    started.append(component)
                    record.mark_started(component.name, by="person" if lease is None else "session")
                    component.start(ctx)
                elif plan.action == "yours":
                    record.mark_yours(component.name, plan.detail)
                component.ready(ctx)
                print(f"{component.name:<9} {plan.outcome}", flush=True)
        except BaseException:
            _stop(ctx, record, reversed(started), why="undoing the failed up: ")
            if record.empty:
                env_file.unlink(missing_ok=True)
            if lease is not None:
                leases.release(lease)
            raise
    print(f"up in {time.monotonic() - began:.1f} s; endpoints in {env_file}", flush=True)
    return UpReport(env, env_file, tuple(component.name for component in started))


def down(profile: str = "dev", *, lease: int | None = None) -> None:
    """Stop exactly what ``up`` started.

    With a ``lease`` (a test session's pid): give it back and, once no other test session
    holds one, stop what test sessions started; what a person started keeps running.
    """
    ctx = _context(profile, None)
    with state_lock(ctx.profile.state_dir):
        record = StartedRecord(ctx.profile.state_dir)
        if lease is None:
            for component in COMPONENTS:
                if record.how(component.name) == "yours":
                    record.forget(component.name)
                    print(f"{component.name:<9} yours: left alone")
            stopping = [c for c in reversed(COMPONENTS) if record.how(c.name) == "started"]
        else:
            leases = Leases(ctx.profile.state_dir)
            leases.release(lease)
            if others := leases.holders():
                print(f"left running: test sessions {others} still use it")
                return
            stopping = [c for c in reversed(COMPONENTS) if record.started_by(c.name, "session")]
        _stop(ctx, record, stopping)
        if not stopping:
            print("nothing to stop: up started nothing that still runs")
        if record.empty:
            (ctx.profile.state_dir / "stack.env").unlink(missing_ok=True)


def status(profile: str = "dev") -> list[StatusRow]:
    """One row per part: where it listens, its pid and whether it runs."""
    ctx = _context(profile, None)
    record = StartedRecord(ctx.profile.state_dir)
    rows: list[StatusRow] = []
    for component in COMPONENTS:
        if record.how(component.name) == "yours":
            rows.append(StatusRow(component.name, record.where(component.name), None, "yours"))
        else:
            rows += component.status(ctx)
    return rows


def _write_stack_env(ctx: Context, env_file: Path) -> dict[str, str]:
    """Write stack.env before anything starts: the endpoints follow from the profile and the
    environment alone, and the services (started last) read their settings from the file."""
    env = {"SAGAKIT_STACK_PROFILE": ctx.profile.name}
    for component in COMPONENTS:
        env |= component.env(ctx)
    env["SAGAKIT_ADMIN_TOKEN"] = admin_token(ctx.profile.state_dir)
    write_stack_env(env_file, env)
    return env


def _stop(
    ctx: Context, record: StartedRecord, components: Iterable[Component], why: str = ""
) -> None:
    for component in components:
        try:
            component.stop(ctx)
        except StackError as error:
            print(f"{component.name:<9} {why}could not stop: {error}")
            continue
        record.forget(component.name)
        print(f"{component.name:<9} {why}stopped", flush=True)


def _context(
    profile: str, environ: Mapping[str, str] | None, kafka: Topology | None = None
) -> Context:
    if profile not in PROFILES:
        raise StackError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return Context(PROFILES[profile], os.environ if environ is None else environ, kafka)
