"""The reference system: its services, each one folder ``services/<name>/`` with an ``app.py``.

``declarations()`` finds them: whatever runs or checks the whole system (the local stack, the
compose file, Prometheus, the end-to-end tests, the AsyncAPI document) asks it rather than
listing the services by name, so a new service is picked up from its folder alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the reference commons (events, ids) import this package: keep it light
    from shared.app.declaration import ServiceDeclaration

__all__ = ["declarations"]


def declarations() -> tuple[ServiceDeclaration[Any], ...]:
    """The declaration (``service``) of every ``services/<name>/app.py``, by declared port.

    The port orders them because it is what users know them by (order 8000, payment 8001,
    inventory 8002, shipping 8003): the local stack keeps each on its port's offset.
    """
    found: list[ServiceDeclaration[Any]] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg or importlib.util.find_spec(f"{__name__}.{info.name}.app") is None:
            continue
        declaration = importlib.import_module(f"{__name__}.{info.name}.app").service
        if declaration.name != info.name:
            raise ValueError(
                f"services/{info.name}/app.py declares a service named {declaration.name!r}: "
                "a service is named after its folder (its module, its database, its variables)"
            )
        found.append(declaration)
    ports = [d.port for d in found]
    if len(set(ports)) != len(ports):
        taken = {d.name: d.port for d in found}
        raise ValueError(f"two services declare the same port: {taken}")
    return tuple(sorted(found, key=lambda d: d.port))
