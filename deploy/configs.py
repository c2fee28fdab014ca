"""``python -m deploy.configs [--check]``: the static files' lists of services, from the code.

Four files are configuration other tools read as they are (Docker Compose, Prometheus, the
postgres image's init script, a shell), and each lists the services: the compose file's
containers, Prometheus' scrape targets, the databases to create, the addresses scripts use.
Those lists are generated from the declarations (``deploy.localstack.declared``) into a
marked region of each file; the rest of the file is written by hand. ``--check`` fails when
a region is not what the code gives (a unit test runs it), so a service added under
``services/`` is one ``python -m deploy.configs`` away from running on Docker too.

The compose stack runs the same instances as the local stack, on the same host ports; a
service with a second instance names its first ``<service>-1`` there (a DNS name each). The
companions services declare (``services/<name>/companions.py``: the notification service's
webhook receiver) run there too, on the same image and host ports, and their settings go to
the service that declares them.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import services
from deploy.localstack.declared import (
    DECLARED_FIRST_PORT,
    CompanionSlot,
    DeclaredService,
    companion_slots,
    declared_services,
    instance_slots,
)

__all__ = ["FILES", "Region", "main", "regenerated"]

DEPLOY = Path(__file__).resolve().parent
COMMAND = "python -m deploy.configs"
DOCKER_DB = "postgresql+asyncpg://sagakit:sagakit@{host}:5432/{database}"


@dataclass(frozen=True)
class Container:
    """One compose service running a sagakit service: its name, what it runs, its ports."""

    name: str
    service: DeclaredService
    host_port: int

    @property
    def port(self) -> int:
        """The port it listens on inside its container: the service's declared port."""
        return self.service.port


def containers() -> list[Container]:
    """The local stack's instances as compose services, each second instance after its first."""
    by_name = {s.name: s for s in declared_services()}
    slots = instance_slots()
    twice = {slot.service for slot in slots if slot.name != slot.service}
    found: list[Container] = []
    for service in by_name.values():
        for slot in (s for s in slots if s.service == service.name):
            name = f"{slot.name}-1" if slot.name in twice else slot.name
            found.append(Container(name, service, DECLARED_FIRST_PORT + slot.offset))
    return found


def _first_container(service: str) -> str:
    return next(c.name for c in containers() if c.service.name == service)


def _urls_it_reads(service: DeclaredService) -> list[DeclaredService]:
    """The other services whose ``SAGAKIT_<NAME>_URL`` its settings read (the order service's
    explorer asks payment, inventory and shipping about an order)."""
    declaration = next(d for d in services.declarations() if d.name == service.name)
    fields = declaration.settings.model_fields
    return [s for s in declared_services() if s != service and f"{s.name}_url" in fields]


def _companion_port(slot: CompanionSlot) -> int:
    """Where a companion listens, in its container and on the host: as on the local stack."""
    return DECLARED_FIRST_PORT + slot.offset


def compose_services() -> str:
    lines: list[str] = []
    for container in containers():
        service = container.service
        lines += [f"  {container.name}:", "    <<: *service"]
        if container.host_port != container.port:
            lines.append(
                f"    # The local stack's {container.name} answers on {container.host_port} too."
            )
        lines += [
            "    ports:",
            f'      - "127.0.0.1:{container.host_port}:{container.port}"',
            "    environment:",
            "      <<: *platform-env",
            f"      SERVICE: {service.name}",
            f'      PORT: "{container.port}"',
            f"      SAGAKIT_INSTANCE_ID: {container.name}",
            f"      {service.database_var}: "
            + DOCKER_DB.format(host="postgres", database=service.database),
        ]
        if others := _urls_it_reads(service):
            lines.append("      # Where the services its settings ask about answer.")
            lines += [
                f"      {o.url_var}: http://{_first_container(o.name)}:{o.port}" for o in others
            ]
        if companions := [c for c in companion_slots() if c.service == service.name]:
            lines.append(
                f"      # What its companions give it (services/{service.name}/companions.py)."
            )
            for slot in companions:
                url = f"http://{slot.companion.name}:{_companion_port(slot)}"
                lines += [
                    f"      {k}: {v.format(url=url)}" for k, v in slot.companion.settings.items()
                ]
        lines.append("")
    for slot in companion_slots():
        port = _companion_port(slot)
        lines += [
            f"  {slot.companion.name}:",
            "    <<: *service",
            f"    # Beside {slot.service}: services/{slot.service}/companions.py.",
            "    depends_on: {}",
            "    ports:",
            f'      - "127.0.0.1:{port}:{port}"',
            "    environment:",
            f"      SERVICE: {slot.companion.module}",
            f'      PORT: "{port}"',
            "",
        ]
    return "\n".join(lines)


def prometheus_targets() -> str:
    return "\n".join(f"          - {c.name}:{c.port}" for c in containers()) + "\n"


def init_databases() -> str:
    return (
        "\n".join(f"CREATE DATABASE {s.database} OWNER sagakit;" for s in declared_services())
        + "\n"
    )


def stack_env() -> str:
    declared = declared_services()
    host = "http://127.0.0.1:{port}"
    urls = [f"{s.url_var}={host.format(port=s.port)}" for s in declared]
    instances = ",".join(host.format(port=c.host_port) for c in containers())
    databases = [
        f"{s.database_var}=" + DOCKER_DB.format(host="127.0.0.1", database=s.database)
        for s in declared
    ]
    companions = [
        f"{slot.companion.url_var}={host.format(port=_companion_port(slot))}"
        for slot in companion_slots()
    ]
    lines = [*urls, f"SAGAKIT_INSTANCE_URLS={instances}", *databases, *companions]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Region:
    """The generated part of one file: between a begin and an end marker line."""

    path: Path
    comment: str
    """How the file's syntax starts a comment."""
    body: Callable[[], str]

    @property
    def begin(self) -> str:
        return f"{self.comment} generated by {COMMAND} from services/*/app.py: do not edit"

    @property
    def end(self) -> str:
        return f"{self.comment} end of generated"

    def regenerate(self, text: str) -> str:
        """``text`` with the region's lines replaced by what the code gives."""
        lines = text.splitlines(keepends=True)
        stripped = [line.strip() for line in lines]
        try:
            start, stop = stripped.index(self.begin), stripped.index(self.end)
        except ValueError:
            raise ValueError(f"{self.path}: no '{self.begin}' ... '{self.end}' region") from None
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        return "".join(
            [*lines[: start + 1], self.body(), indent + self.end + "\n", *lines[stop + 1 :]]
        )


FILES = (
    Region(DEPLOY / "docker-compose.yml", "#", compose_services),
    Region(DEPLOY / "prometheus" / "prometheus.yml", "#", prometheus_targets),
    Region(DEPLOY / "docker" / "postgres-init.sql", "--", init_databases),
    Region(DEPLOY / "docker" / "stack.env", "#", stack_env),
)


def regenerated(region: Region) -> tuple[str, str]:
    """(the file as it is, the file as the code gives it)."""
    current = region.path.read_text()
    return current, region.regenerate(current)


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check``, compare) every region; the exit status."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = 0
    for region in FILES:
        current, generated = regenerated(region)
        if current == generated:
            continue
        if not args.check:
            region.path.write_text(generated)
            print(f"wrote {region.path}")
            continue
        stale += 1
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            str(region.path),
            "generated from the declarations",
        )
        sys.stderr.writelines(list(diff)[:60])
        print(f"{region.path} is out of date: run {COMMAND}", file=sys.stderr)
    if not stale and args.check:
        print("the services' lists in deploy/ match the declarations")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
