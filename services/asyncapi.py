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
import pkgutil
import sys
from pathlib import Path
from typing import Any

import services
from shared.app.asyncapi import ServiceWiring, main
from shared.app.declaration import ServiceDeclaration
from shared.app.platform import Platform
from shared.contracts.events import CATALOGUE, Event

__all__ = ["reference_services"]


def reference_services() -> list[ServiceWiring]:
    """The wiring of every service under ``services/``, read from its code."""
    names = sorted(info.name for info in pkgutil.iter_modules(services.__path__) if info.ispkg)
    return [_wiring(name, Path(services.__path__[0]) / name) for name in names]


def _wiring(name: str, package: Path) -> ServiceWiring:
    declaration: ServiceDeclaration[Any] = importlib.import_module(f"services.{name}.app").service
    # Configuring connects to nothing: the factories only need the platform's objects.
    platform = Platform.configure(declaration.settings(), declaration.fault_kinds)
    groups = {
        group: tuple(dict.fromkeys(s.event_type for s in subscriptions))
        for group, subscriptions in declaration.consumers(platform).items()
    }
    return ServiceWiring(name, _emitted_by(package), groups)


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
    sys.exit(main(reference_services()))
