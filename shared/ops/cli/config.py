"""Where the command line finds its settings: the same ``SAGAKIT_*`` variables as the services.

In order: ``--env-file FILE`` when given; otherwise ``.stack/stack.env`` of the current
directory when there is one (``make up`` writes it); otherwise nothing but the environment.
Variables set in the environment win over the file's, as with any dotenv file, so
``SAGAKIT_KAFKA_BOOTSTRAP=host:9092 sagakit ...`` points one command elsewhere. Kafka's
security settings (``SAGAKIT_KAFKA_SECURITY_PROTOCOL``, ``_SASL_*``, ``_SSL_*``) come along
with ``PlatformSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import ValidationError

from shared.contracts.topics import Topics
from shared.ops.cli.output import CliError
from shared.ops.cli.plugins import installed_catalogue
from shared.settings import PlatformSettings, kafka_client_options

__all__ = ["STACK_ENV", "CliSettings", "Config", "config"]

SettingsT = TypeVar("SettingsT", bound=PlatformSettings)

STACK_ENV = Path(".stack") / "stack.env"
DEFAULT_TIMEOUT_S = 30.0


class CliSettings(PlatformSettings):
    """The platform's settings, as the command line reads them."""

    service_name: str = "sagakit-cli"
    catalogue: str | None = None
    """Which installed event catalogue the commands use (``shared.ops.cli.plugins``)."""
    operator: str | None = None
    """SAGAKIT_OPERATOR: the name the audit trail records for this command line's changes
    (default: the login name and host)."""


@dataclass(frozen=True)
class Config:
    """The root options, and the settings they lead to (read on first use)."""

    env_file: Path | None = None
    bootstrap: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def source(self) -> Path | None:
        """The file the settings are read from, if any."""
        if self.env_file is not None:
            return self.env_file
        return STACK_ENV if STACK_ENV.is_file() else None

    @cached_property
    def settings(self) -> CliSettings:
        return self.settings_of(CliSettings)

    def settings_of(self, kind: type[SettingsT]) -> SettingsT:
        """Settings of class ``kind`` from the same sources (a system's commands add their
        own settings to ``CliSettings``)."""
        if self.env_file is not None and not self.env_file.is_file():
            raise CliError(f"--env-file {self.env_file}: no such file")
        overrides: dict[str, Any] = {"kafka_bootstrap": self.bootstrap} if self.bootstrap else {}
        try:
            return kind(_env_file=self.source, **overrides)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise CliError(f"setting {where.upper()}: {problem['msg']}") from error

    def kafka_options(self) -> dict[str, Any]:
        """aiokafka's connection options, security included."""
        return kafka_client_options(self.settings)

    @property
    def bootstrap_servers(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def topics(self) -> Topics:
        """The installed catalogue's topic names (``shared.ops.cli.plugins``), with
        ``SAGAKIT_TOPIC_PREFIX``."""
        return Topics(installed_catalogue(self.settings.catalogue), self.settings.topic_prefix)


def config(ctx: typer.Context) -> Config:
    """The ``Config`` the root command put in the context."""
    root = ctx.find_root()
    if not isinstance(root.obj, Config):
        root.obj = Config()
    return root.obj
