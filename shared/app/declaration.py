"""A service declared once: what it is made of. The platform builds and runs the rest.

A service's ``app.py`` holds one ``ServiceDeclaration``: its name, settings class (the
platform's own unless it has settings of its own), migrations, the event catalogue of its
system (``shared.contracts.catalogue``), the business fault kinds it accepts, its consumer
groups (or a factory of them), and factories for its routers and components. Each factory
gets the service's ``Platform`` (settings, unit-of-work factory, fault registry), because what
it builds needs them; none of them connects to anything.
``app()`` builds the FastAPI application and ``run()`` serves it from the command line
(``python -m services.<name>``), so a service has no bootstrap code of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware

from shared.app.platform import Platform
from shared.app.serve import serve
from shared.app.service import Component, create_app
from shared.consuming.faults import INFRASTRUCTURE_KINDS, BusinessFault
from shared.consuming.subscriptions import Subscription
from shared.contracts.catalogue import Catalogue
from shared.publishing.purger import Purge
from shared.settings import PlatformSettings, database_url_field

__all__ = ["ServiceDeclaration"]

SettingsT = TypeVar("SettingsT", bound=PlatformSettings)

Consumers = Mapping[str, Sequence[Subscription]]
"""Consumer group name -> the subscriptions that group runs."""


def _nothing(_: object) -> tuple[()]:
    return ()


@dataclass(frozen=True, kw_only=True)
class ServiceDeclaration(Generic[SettingsT]):
    """Everything that makes one service; see the module docstring."""

    name: str
    settings: type[SettingsT] = PlatformSettings  # type: ignore[assignment]
    """Its settings class, whose ``service_name`` default must be ``name``; by default the
    platform's settings, named after the service, its database its own
    (``SAGAKIT_<NAME>_DATABASE_URL``)."""
    description: str
    port: int
    """The port ``python -m services.<name>`` listens on unless told otherwise."""
    migrations: Path
    catalogue: Catalogue[Any]
    """The events of its system: its topics, what its consumers decode."""
    consumers: Consumers | Callable[[Platform[SettingsT]], Consumers]
    """Its consumer groups, or a factory of them when they need the platform (to put a
    business fault in front of a rule, say)."""
    business_faults: frozenset[BusinessFault] = frozenset()
    """The business fault kinds it accepts, besides the infrastructure ones every service
    accepts; its factories put them in front of its rules (``Platform.business_fault``)."""
    routers: Callable[[Platform[SettingsT]], Sequence[APIRouter]] = _nothing
    admin_routers: Callable[[Platform[SettingsT]], Sequence[APIRouter]] = _nothing
    """Routers behind the admin token."""
    middleware: Callable[[Platform[SettingsT]], Sequence[Middleware]] = _nothing
    """Pure ASGI middleware of its own (``starlette.middleware.Middleware``), outermost first:
    inside the platform's access log, in front of routing, where a request can be answered
    before its body is read (the order service's admission control)."""
    components: Callable[[Platform[SettingsT]], Sequence[Component]] = _nothing
    """What runs in the background besides the platform's consumers and outbox relay."""
    purges: Callable[[Platform[SettingsT]], Sequence[Purge]] = _nothing
    """Retention rules of its own tables, run by the platform's purger with the outbox's and
    the inbox's (``shared.publishing.purger``)."""

    def __post_init__(self) -> None:
        if self.settings is PlatformSettings:
            named_after_it = type(
                f"{self.name.title().replace('-', '')}Settings",
                (PlatformSettings,),
                {
                    "__annotations__": {"service_name": str, "database_url": str},
                    "service_name": self.name,
                    # SAGAKIT_<NAME>_DATABASE_URL, else SAGAKIT_DATABASE_URL: its own database.
                    "database_url": database_url_field(self.name),
                },
            )
            object.__setattr__(self, "settings", named_after_it)
        named = self.settings.model_fields["service_name"].default
        if named != self.name:
            raise ValueError(
                f"{self.settings.__name__}.service_name defaults to {named!r}, not {self.name!r}"
            )
        if self.business_faults & INFRASTRUCTURE_KINDS:
            raise ValueError("business_faults lists kinds every service accepts anyway")

    def groups(self, platform: Platform[SettingsT]) -> Consumers:
        """Its consumer groups, built on ``platform`` when it declared a factory of them."""
        return self.consumers(platform) if callable(self.consumers) else self.consumers

    @property
    def fault_kinds(self) -> frozenset[str]:
        """Every fault kind this service accepts."""
        return INFRASTRUCTURE_KINDS | self.business_faults

    def app(self, settings: SettingsT | None = None) -> FastAPI:
        """The service as an ASGI app (``settings`` read from the environment if not given);
        it connects when the app starts."""
        platform = Platform.configure(settings or self.settings(), self.catalogue, self.fault_kinds)
        service = platform.service(
            migrations=self.migrations,
            consumers=self.groups(platform),
            routers=self.routers(platform),
            admin_routers=self.admin_routers(platform),
            middleware=self.middleware(platform),
            components=self.components(platform),
            purges=self.purges(platform),
            description=self.description,
        )
        return create_app(service)

    def run(self) -> None:
        """Serve the service from the command line until SIGTERM or SIGINT."""
        settings = self.settings()
        serve(lambda: self.app(settings), settings, default_port=self.port)
