"""``python -m services.asyncapi [--check]``: docs/asyncapi.yaml of the reference system.

The document itself is built by ``shared.app.asyncapi`` from the event catalogue; this module
tells it what each of the four services sends and receives, read from their code. Who
receives what comes from each service's declaration (its consumer groups and their
subscriptions). Who sends what is declared nowhere (handlers emit with ``uow.emit``), so it is
read from each service's source: every ``X.first(...)`` and ``X.caused_by(...)`` of a
catalogue type ``X``. An event emitted some other way would be missed; the unit tests compare
both with docs/events.md's topic table.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from typing import Any

import services
from services.events import CATALOGUE
from shared.app.asyncapi import DocumentText, ServiceWiring, main
from shared.app.declaration import ServiceDeclaration
from shared.app.platform import Platform
from shared.contracts.events import Event

__all__ = ["TEXT", "reference_services"]

ABOUT = """\
The events the order saga's four services exchange on Kafka, generated from the code
(`python -m services.asyncapi`; docs/events.md tells the same in prose).

Every topic carries one event type and is named after it in kebab case; with
`SAGAKIT_TOPIC_PREFIX` every topic and consumer group name starts with that prefix (the
`prefix` parameter, empty by default). Every record is keyed by the order id (UTF-8), so an
order's events on one topic keep their order, and its value is a UTF-8 JSON object: the
envelope, then the event's own fields. Readers ignore fields they do not know.

`schema_version` counts an event type's breaking changes. A consumer reads its type's
current version and every older one (upcast to the current model before any handler sees
it); a version newer than it knows is dead-lettered, with the reason in `dlq.error.message`,
rather than misread.

Each topic `T` has a dead-letter topic `T-dlq`: a record no consumer group could take, its key
and value byte for byte, with the `dlq.*` headers saying where it was read, by whom, why, and
after how many attempts. `sagakit dlq replay T-dlq` publishes them to `T` again."""

TEXT = DocumentText(title="sagakit order saga events", about=ABOUT, key="the order id")
"""What the reference system's document says of it."""


def reference_services() -> list[ServiceWiring]:
    """The wiring of every service under ``services/``, read from its code, by name."""
    return [_wiring(d) for d in sorted(services.declarations(), key=lambda d: d.name)]


def _wiring(declaration: ServiceDeclaration[Any]) -> ServiceWiring:
    package = Path(importlib.import_module(f"services.{declaration.name}").__path__[0])
    # Configuring connects to nothing: the factories only need the platform's objects.
    platform = Platform.configure(
        declaration.settings(), declaration.catalogue, declaration.fault_kinds
    )
    groups = {
        group: tuple(dict.fromkeys(s.event_type for s in subscriptions))
        for group, subscriptions in declaration.groups(platform).items()
    }
    return ServiceWiring(declaration.name, _emitted_by(package), groups)


def _emitted_by(package: Path) -> tuple[type[Event], ...]:
    """The catalogue types the package's code creates with ``.first`` or ``.caused_by``."""
    made: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("first", "caused_by")
                and isinstance(node.func.value, ast.Name)
            ):
                made.add(node.func.value.id)
    return tuple(cls for cls in CATALOGUE if cls.type_name() in made)


if __name__ == "__main__":
    sys.exit(main(CATALOGUE, reference_services(), TEXT))
