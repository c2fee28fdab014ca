"""The run as a readable table, drawn from the results document (so ``python -m bench --show
FILE`` prints an old run the same way)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.hops import HAPPY_PATH, SEGMENTS, STAGES, happy_path_segments

__all__ = ["render"]

Doc = Mapping[str, Any]


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(summary: Doc | None, key: str) -> str:
    if not summary:
        return "-"
    value = float(summary[key])
    return _n(value, 1 if value < 100 else 0)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}" if value < 1 else f"{value:.1f}x"


def _counts(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items()) if counts else "none"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [list(header), ["-" * w for w in widths], *rows]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def _latency_rows(named: Sequence[tuple[str, Doc | None]]) -> list[list[str]]:
    return [
        [name, *(_ms(s, key) for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))]
        for name, s in named
    ]


def _header(doc: Doc) -> list[str]:
    commit, machine, versions = doc["commit"], doc["machine"], doc["versions"]
    changed = commit.get("changed_files") or []
    dirty = f" + {len(changed)} changed file(s)" if changed else ""
    platform = doc["platform_settings"]
    constants = platform.get("constants", {})
    linger = constants.get("shared.publishing.producer", {}).get("LINGER_MS")
    instances = ", ".join(f"{name} {n}" for name, n in platform.get("instances", {}).items())
    return [
        f"sagakit bench, {doc['started_at']}, commit {str(commit.get('sha'))[:10]}{dirty}",
        f"  machine   {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"load {machine['load_average_at_start'][0]} at start",
        f"  software  Python {machine['python']} (the load on "
        f"{doc['bench_settings'].get('event_loop')}), "
        f"Kafka {versions['kafka'].split()[0]}, PostgreSQL {versions['postgresql']}, "
        f"Redis {versions['redis']}",
        f"  platform  {platform.get('topic_partitions')} partitions; instances {instances}; "
        f"producer linger {linger} ms",
    ]


def _closed(closed: Doc) -> list[str]:
    sagas = closed["sagas"]
    lines = [
        f"closed loop: {closed['orders']:,} orders, {closed['clients']} keep-alive clients",
        f"  orders accepted    {_n(closed['accepted_per_s'], 1)}/s "
        f"({closed['accepted']:,} in {closed['send_seconds']:.1f} s; errors: "
        f"{_counts(closed['errors'])})",
        f"  sagas completed    {_n(sagas['completed_per_s'], 1)}/s "
        f"({sagas['completed']:,} in {sagas['window_s']:.1f} s, first accepted to last "
        f"completed; not completed: {_counts(sagas['not_completed'])})",
    ]
    cpu = closed.get("cpu")
    if cpu:
        lines.extend(_cpu_per_saga(cpu, sagas["completed_per_s"]))
    rows = _latency_rows([("API", closed["api_latency"]), ("saga", sagas["latency"])])
    return lines + _table(["latency ms", "p50", "p95", "p99", "max"], rows)


def _cpu_per_saga(cpu: Doc, sagas_per_s: float | None) -> list[str]:
    shares = ", ".join(
        f"{name} {_n(ms, 2)}" for name, ms in cpu["per_saga_ms_by_process"].items() if ms
    )
    return [
        f"  CPU per saga       {_n(cpu['per_saga_ms'], 2)} ms at {_n(sagas_per_s, 1)} sagas/s "
        f"({_n(cpu['system_cpu_s'], 1)} CPU-s of the system over {cpu['completed_sagas']:,} "
        f"completed sagas; the load generator's {_n(cpu['load_generator_cpu_s'], 1)}"
        f"{_outside(cpu.get('outside_cpu_s'))} left out)",
        f"                     ms per saga: {shares}",
        *_parts(cpu.get("per_saga_ms_by_part")),
    ]


def _outside(outside: Doc | None) -> str:
    """The processes outside the system (the webhook receiver), as the CPU line names them."""
    return "".join(f" and {name}'s {_n(seconds, 1)}" for name, seconds in (outside or {}).items())


def _parts(parts: Doc | None) -> list[str]:
    """The three parts of the CPU per saga (absent from results written before they were)."""
    if not parts:
        return []
    listed = ", ".join(f"{name} {_n(ms, 2)}" for name, ms in parts.items())
    return [f"                     by part: {listed} (listeners: services that emit no event)"]


_STAGE_HEADERS = {
    "sent": "sent",
    "acknowledged": "acked",
    "fetched": "fetched",
    "begun": "begun",
    "locked": "locked",
    "committed": "committed",
    "offset_committed": "offsets",
}


def _cell(stage: Doc | None) -> str:
    if not stage:
        return "-"
    return f"{_n(stage['mean_ms'], 1)}/{_n(stage['p99_ms'], 0)}"


def hop_rows(hops: Sequence[Doc]) -> list[list[str]]:
    """One row per hop: its name, its records, then mean/p99 ms to each stage."""
    rows = []
    for hop in hops:
        step = hop["happy_path_step"]
        name = f"{'' if step is None else f'{step + 1}. '}{hop['topic']} -> {hop['group']}"
        fetched = hop["stages"].get("fetched") or {}
        rows.append(
            [name, _n(fetched.get("count")), *(_cell(hop["stages"].get(s)) for s in STAGES)]
        )
    return rows


def _hops(title: str, hops: Sequence[Doc], saga: Doc | None) -> list[str]:
    header = ["hop", "records", *(_STAGE_HEADERS[s] for s in STAGES)]
    lines = [title, *_table(header, hop_rows(hops))]
    segments = happy_path_segments(hops)
    if segments is not None:
        total = sum(segments.values())
        saga_mean = f"{_n(saga['mean_ms'], 1)} ms" if saga else "-"
        parts = ", ".join(f"{SEGMENTS[stage]} {_n(ms, 1)}" for stage, ms in segments.items())
        lines.append(
            f"  the {len(HAPPY_PATH)} happy-path hops to their commit: {_n(total, 1)} ms of "
            f"means ({parts}); the sagas' mean {saga_mean}"
        )
    return lines


_LEGEND = [
    "  sent: handed to the producer by the relay; acked: the relay heard Kafka's "
    "acknowledgement; fetched: the consumer's poll returned it;",
    "  begun: its transaction has a connection; locked: the group's lock taken and its events "
    "claimed; committed: its COMMIT returned; offsets: its offset committed",
]


def _breakdowns(scenarios: Doc) -> list[list[str]]:
    explained = "mean/p99 ms from the outbox row's write (the producer's commit) to each stage"
    blocks = []
    for step in scenarios.get("open_loop") or []:
        if step.get("hops"):
            title = f"latency per hop at {step['offered_per_s']:g}/s offered: {explained}"
            blocks.append(_hops(title, step["hops"], step["sagas"]["latency"]))
    closed = scenarios.get("closed_loop")
    if closed and closed.get("hops"):
        title = f"latency per hop in the closed loop ({closed['clients']} clients): {explained}"
        blocks.append(_hops(title, closed["hops"], closed["sagas"]["latency"]))
    if blocks:
        blocks[0][1:1] = _LEGEND
    return blocks


def _open(steps: Sequence[Doc]) -> list[str]:
    rows = []
    for step in steps:
        if step.get("failed"):
            rows.append([_n(step["offered_per_s"]), "failed", "", "", "", "", "", ""])
            continue
        sagas = step["sagas"]
        kept = "yes" if step["kept_up"] else "no: " + "; ".join(step["misses"])
        rows.append(
            [
                _n(step["offered_per_s"]),
                _n(step["achieved_per_s"], 1),
                _ms(step["api_latency"], "p50_ms"),
                _ms(step["api_latency"], "p99_ms"),
                _ms(sagas["latency"], "p50_ms"),
                _ms(sagas["latency"], "p99_ms"),
                _ms(step.get("send_lag"), "p99_ms"),
                kept,
            ]
        )
    seconds = steps[0].get("seconds", "?") if steps else "?"
    header = ["offered/s", "accepted/s", "API p50", "API p99", "saga p50", "saga p99", "late p99"]
    title = (
        f"open loop: {seconds} s per rate, latencies in ms (late: how far behind its schedule "
        "the load generator sent)"
    )
    return [title, *_table([*header, "kept up"], rows)]


def _transport(transport: Doc, ratios: Doc) -> list[str]:
    hops = transport["hop_latency"]
    unloaded = transport["unloaded_hop_latency"]
    lines = [
        f"transport limit: {transport['chains']:,} chains of {transport['hops']} hops, at most "
        f"{transport['max_in_flight']:,} in flight, {transport['partitions']} partitions, "
        f"values {min(transport['value_bytes'])}-{max(transport['value_bytes'])} bytes",
        f"  chains             {_n(transport['chains_per_s'])}/s "
        f"({transport['completed']:,} in {transport['seconds']:.1f} s)",
        f"  platform's sagas/s over this: "
        f"{_share(ratios.get('sagas_per_s_over_transport_chains_per_s'))}",
    ]
    rows = [["chain, loaded", *(_ms(transport["chain_latency"], k) for k in ("p50_ms", "p99_ms"))]]
    rows += [
        [f"hop {i}, loaded", _ms(h, "p50_ms"), _ms(h, "p99_ms")] for i, h in enumerate(hops, 1)
    ]
    rows.append(
        [
            "chain, one at a time",
            *(_ms(transport["unloaded_chain_latency"], k) for k in ("p50_ms", "p99_ms")),
        ]
    )
    rows += [
        [f"hop {i}, one at a time", _ms(h, "p50_ms"), _ms(h, "p99_ms")]
        for i, h in enumerate(unloaded, 1)
    ]
    return lines + _table(["latency ms", "p50", "p99"], rows)


def _sync(sync: Doc, ratios: Doc) -> list[str]:
    lines = [
        f"synchronous chain (the seed's before): {sync['clients']} keep-alive clients, "
        f"{sync['seconds']:.0f} s",
        f"  orders             {_n(sync['orders_per_s'], 1)}/s ({sync['completed']:,} completed; "
        f"errors: {_counts(sync['errors'])})",
        f"  event-driven over this: orders accepted "
        f"{_share(ratios.get('accepted_per_s_over_sync_orders_per_s'))}, sagas completed "
        f"{_share(ratios.get('sagas_per_s_over_sync_orders_per_s'))}",
    ]
    rows = _latency_rows([("API (= saga)", sync["latency"])])
    return lines + _table(["latency ms", "p50", "p95", "p99", "max"], rows)


def _outages(outages: Sequence[Doc]) -> list[str]:
    first = outages[0]
    rows = []
    for outage in outages:
        during = outage["during"]
        drain = outage["drain_after_resume_s"]
        rows.append(
            [
                outage["design"],
                f"{during['accepted']}/{during['due']}",
                _counts(during["errors"]),
                _ms(during["api_latency"], "p99_ms"),
                "never" if drain is None else f"{drain:.1f} s",
                str(outage["unfinished"]),
                f"{outage['after']['accepted']}/{outage['after']['due']}",
            ]
        )
    header = ["design", "accepted", "errors", "API p99 ms", "drained", "unfinished", "after"]
    title = (
        f"payment stopped (SIGSTOP) for {first['stop_seconds']:g} s, "
        f"{first['offered_per_s']:g} orders/s offered throughout; accepted and errors while "
        "stopped, drained = from the resume until every order due before it had ended"
    )
    return [title, *_table(header, rows)]


def _stall(stall: Doc) -> list[str]:
    latency = stall["healthy_latency"]
    rows = _latency_rows(
        [
            ("healthy partitions, before", latency["before"]),
            ("healthy partitions, while one had no leader", latency["stalled"]),
            ("healthy partitions, after", latency["after"]),
            ("the stalled partition's events", stall["stalled_partition_latency"]),
        ]
    )
    title = (
        f"one partition of {stall['partitions']} without a leader for {stall['stalled_s']:g} s "
        f"(its broker killed), {stall['rate_per_s']:g} events/s through the outbox; latency "
        "from commit to a consumer"
    )
    lines = [
        f"  healthy p99 while stalled over before: {_share(stall['healthy_p99_slowdown'])}; "
        f"events {stall['arrived']:,} of {stall['emitted']:,} arrived, "
        f"{stall['duplicates']} duplicates",
    ]
    return [title, *_table(["latency ms", "p50", "p95", "p99", "max"], rows), *lines]


_SHORT = {
    "closed loop": "closed",
    "outage, event-driven": "outage",
    "transport limit": "transport",
    "synchronous chain": "sync",
    "outage, synchronous": "sync outage",
    "partition stall": "stall",
}


def _cpu(doc: Doc) -> list[str]:
    cpu: Mapping[str, Mapping[str, float]] = doc.get("scenario_cpu_seconds", {})
    seconds: Mapping[str, float] = doc.get("scenario_seconds", {})
    scenarios = [name for name in cpu if cpu[name]]
    processes = list(dict.fromkeys(p for name in scenarios for p in cpu[name]))
    header = ["cpu seconds", *(_SHORT.get(n, n.replace("open loop ", "open ")) for n in scenarios)]
    rows = [["wall clock", *(_n(seconds.get(n), 1) for n in scenarios)]]
    rows += [[p, *(_n(cpu[n].get(p), 1) for n in scenarios)] for p in processes]
    title = "where the CPU went: seconds each process used during each scenario"
    return [title, *_table(header, rows)]


def render(doc: Doc) -> str:
    """The whole run: header, then one block per scenario that ran."""
    scenarios, ratios = doc.get("scenarios", {}), doc.get("ratios", {})
    blocks = [_header(doc)]
    if scenarios.get("closed_loop"):
        blocks.append(_closed(scenarios["closed_loop"]))
    if scenarios.get("open_loop"):
        blocks.append(_open(scenarios["open_loop"]))
    blocks.extend(_breakdowns(scenarios))
    if scenarios.get("transport"):
        blocks.append(_transport(scenarios["transport"], ratios))
    if scenarios.get("synchronous"):
        blocks.append(_sync(scenarios["synchronous"], ratios))
    outages = [scenarios.get(k) for k in ("outage_event_driven", "outage_synchronous")]
    if any(outages):
        blocks.append(_outages([o for o in outages if o]))
    if scenarios.get("stall"):
        blocks.append(_stall(scenarios["stall"]))
    if doc.get("scenario_cpu_seconds"):
        blocks.append(_cpu(doc))
    for name, error in doc.get("errors", {}).items():
        blocks.append([f"FAILED {name}: {error}"])
    blocks.append([f"took {doc.get('elapsed_s')} s"])
    return "\n\n".join("\n".join(block) for block in blocks)
