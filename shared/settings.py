"""Settings every service shares, read from ``SAGAKIT_*`` environment variables.

One class per service subclasses ``PlatformSettings`` to add its own fields (its database URL
first of all); nothing else in the code reads ``os.environ``.

| variable | default | meaning |
| --- | --- | --- |
| SAGAKIT_KAFKA_BOOTSTRAP | 127.0.0.1:9092 | bootstrap servers, comma-separated |
| SAGAKIT_KAFKA_SECURITY_PROTOCOL | PLAINTEXT | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL |
| SAGAKIT_KAFKA_SASL_MECHANISM / _SASL_USERNAME / _SASL_PASSWORD | - | SASL credentials |
| SAGAKIT_KAFKA_SSL_CAFILE / _SSL_CERTFILE / _SSL_KEYFILE | - | TLS files |
| SAGAKIT_KAFKA_COMPRESSION | none | none, gzip, lz4, zstd or snappy |
| SAGAKIT_TOPIC_PREFIX | "" | prefix of every topic name (to share a cluster) |
| SAGAKIT_TOPIC_PARTITIONS | 6 | partitions of topics created by ensure-topics |
| SAGAKIT_TOPIC_REPLICATION_FACTOR | 1 | use 3 on a real cluster |
| SAGAKIT_TOPIC_MIN_INSYNC_REPLICAS | 1 | use 2 on a real cluster |
| SAGAKIT_DLQ_RETENTION_MS | -1 | retention.ms of the DLQ topics (-1: for ever), set at start |
| SAGAKIT_REDIS_URL | redis://127.0.0.1:6379/0 | idempotency fast path |
| SAGAKIT_DATABASE_POOL_SIZE / _MAX_OVERFLOW | 15 / 0 | connections kept open / opened for bursts |
| SAGAKIT_CONSUMER_BATCH_SIZE | 200 | most records of one partition handled in one transaction |
| SAGAKIT_RETRY_ATTEMPTS | 3 | attempts of a handler before its record is dead-lettered |
| SAGAKIT_RETRY_BASE_DELAY_MS / _MAX_DELAY_MS | 100 / 5000 | exponential backoff bounds |
| SAGAKIT_IDEMPOTENCY_TTL_SECONDS | 3600 | how long Redis remembers a processed event |
| SAGAKIT_OUTBOX_POLL_INTERVAL_MS | 500 | relay's safety-net poll (it wakes on NOTIFY) |
| SAGAKIT_OUTBOX_RETENTION_HOURS | 24 | outbox rows sent longer ago are deleted (unsent never) |
| SAGAKIT_INBOX_RETENTION_HOURS | 168 | inbox rows processed longer ago are deleted |
| SAGAKIT_OUTBOX_RETENTION_SECONDS / _INBOX_RETENTION_SECONDS | unset | the same in seconds; wins |
| SAGAKIT_PURGE_INTERVAL_SECONDS | 300 | how often the retention purger passes over its tables |
| SAGAKIT_ADMIN_TOKEN | unset | bearer token of the admin endpoints; unset switches them off |
| SAGAKIT_FAULT_INJECTION | true | false: no fault registry, no ``/faults``, nothing wrapped |
| SAGAKIT_INSTANCE_ID | host-pid | names this process in logs, metrics and DLQ headers |
| SAGAKIT_LOG_LEVEL | INFO | DEBUG, INFO, WARNING, ERROR or CRITICAL |
| SAGAKIT_LOG_FORMAT | console | json (one object per line, for a log pipeline) or console |
| SAGAKIT_OTEL_ENABLED | false | record OpenTelemetry spans (`otel` extra); headers flow anyway |
| SAGAKIT_OTEL_EXPORTER | otlp | otlp (its own OTEL_EXPORTER_OTLP_* variables), console, none |
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "OPERATOR",
    "READ_ONLY",
    "AdminToken",
    "ListenerSettings",
    "PlatformSettings",
    "database_url_field",
    "database_url_variables",
    "kafka_client_options",
]


OPERATOR = "operator"
READ_ONLY = "read-only"


@dataclass(frozen=True)
class AdminToken:
    """One admin token: whose it is (the name the audit trail records) and what it may do
    (``operator``: everything; ``read-only``: look, not act)."""

    name: str
    role: str
    secret: SecretStr = field(repr=False)


def _parse_admin_tokens(text: str) -> list[AdminToken]:
    tokens = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, role, secret = [*item.split(":", 2), "", ""][:3]
        if not name or role not in (OPERATOR, READ_ONLY) or not secret:
            raise ValueError(
                f"SAGAKIT_ADMIN_TOKENS: {name or item[:12]!r} is not NAME:ROLE:TOKEN with ROLE "
                f"{OPERATOR} or {READ_ONLY}"
            )
        tokens.append(AdminToken(name, role, SecretStr(secret)))
    names = [token.name for token in tokens]
    if len(set(names)) < len(names):
        raise ValueError("SAGAKIT_ADMIN_TOKENS: a name is given twice")
    return tokens


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class PlatformSettings(BaseSettings):
    """What the platform needs to reach Kafka, Redis and its database, and how to behave."""

    model_config = SettingsConfigDict(env_prefix="SAGAKIT_", extra="ignore", frozen=True)

    service_name: str = "sagakit"
    instance_id: str = Field(default_factory=_default_instance_id)

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "none"

    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    # A dead letter waits for someone to fix its cause and replay it: Kafka's default 7 days
    # would drop it unreplayed. Applied to existing dead-letter topics at every start too.
    dlq_retention_ms: int = Field(default=-1, ge=-1)

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql+asyncpg://sagakit:sagakit@127.0.0.1:5432/sagakit"
    # Connections kept open, and how many more a burst may open: an overflow connection is
    # closed when returned, and opening one costs a server process, a SCRAM handshake
    # (PBKDF2 on both sides) and every statement prepared anew. SQLAlchemy's 5 + 10, and
    # then 10 + 5, opened and closed connections all through a load test; 15 kept open
    # serve the same bursts without it.
    database_pool_size: int = Field(default=15, ge=1)
    database_max_overflow: int = Field(default=0, ge=0)

    # Bounds how long a partition's transaction holds its row locks, and how much one
    # failing record sends back to be done one at a time.
    consumer_batch_size: int = Field(default=200, ge=1)
    # How long a consumer's fetch may wait for records to come together (the broker answers
    # at fetch_min_bytes or after fetch_max_wait_ms, whichever first). A saga step answers
    # at once (1 byte): its saga waits for it. A listener the saga does not wait for (a read
    # model, notifications) does better to wait: one fetch and one transaction for hundreds
    # of records rather than one per record or two, at a fraction of the CPU.
    consumer_fetch_min_bytes: int = Field(default=1, ge=1)
    consumer_fetch_max_wait_ms: int = Field(default=500, ge=0)
    retry_attempts: int = Field(default=3, ge=1)
    retry_base_delay_ms: int = Field(default=100, ge=0)
    retry_max_delay_ms: int = Field(default=5000, ge=0)
    # The fast path only needs the minutes after a first delivery: redeliveries come then (a
    # rebalance, an instance restarted, a relay that published a batch twice), and the inbox
    # table answers for anything older. An hour covers those with a wide margin; a week
    # (the inbox's retention, as it was) kept every event's key for days for nothing.
    idempotency_ttl_seconds: int = Field(default=3600, ge=1)
    outbox_poll_interval_ms: int = Field(default=500, ge=10)
    outbox_retention_hours: int = Field(default=24, ge=1)
    # 7 days is Kafka's default log retention (log.retention.hours=168): an event older than
    # what Kafka keeps cannot be redelivered, so forgetting that it was processed is safe. On
    # a cluster that keeps topics longer, raise this to at least the topics' retention.ms.
    inbox_retention_hours: int = Field(default=7 * 24, ge=1)
    # The same windows in seconds, for a soak or a test that needs every purge to run many
    # times; each wins over its _HOURS twin when set.
    outbox_retention_seconds: int | None = Field(default=None, ge=1)
    inbox_retention_seconds: int | None = Field(default=None, ge=1)
    # How often the retention purger (shared.publishing.purger) passes over its tables.
    purge_interval_seconds: float = Field(default=300.0, gt=0)

    admin_token: SecretStr | None = None
    # Named tokens, NAME:ROLE:TOKEN comma-separated: the audit trail records the name of the
    # token each action came with; a read-only one may look, not act.
    admin_tokens: SecretStr | None = None
    # On by default: the reference system is there to be broken on purpose. A production
    # deployment switches it off, and then no code path can inject anything.
    fault_injection: bool = True

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "console"
    otel_enabled: bool = False
    otel_exporter: Literal["otlp", "console", "none"] = "otlp"

    @field_validator("admin_tokens")
    @classmethod
    def _named_tokens_are_well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _parse_admin_tokens(value.get_secret_value())
        return value

    def named_admin_tokens(self) -> list[AdminToken]:
        """Every admin token: ``SAGAKIT_ADMIN_TOKEN`` (named ``admin``, an operator) and
        those of ``SAGAKIT_ADMIN_TOKENS``; none switches the admin endpoints off."""
        tokens = [AdminToken("admin", OPERATOR, self.admin_token)] if self.admin_token else []
        if self.admin_tokens is not None:
            tokens += _parse_admin_tokens(self.admin_tokens.get_secret_value())
        return tokens

    def outbox_retention(self) -> timedelta:
        """How long a sent outbox row is kept: the seconds setting if given, else the hours."""
        if self.outbox_retention_seconds is not None:
            return timedelta(seconds=self.outbox_retention_seconds)
        return timedelta(hours=self.outbox_retention_hours)

    def inbox_retention(self) -> timedelta:
        """How long an inbox row is kept: the seconds setting if given, else the hours."""
        if self.inbox_retention_seconds is not None:
            return timedelta(seconds=self.inbox_retention_seconds)
        return timedelta(hours=self.inbox_retention_hours)


class ListenerSettings(PlatformSettings):
    """The settings of a service whose consumers the saga does not wait for (it emits no
    event: a read model, notifications): their fetches wait up to a quarter of a second for
    64 KiB of records, so that a busy system's records come in hundreds per fetch and per
    transaction. Measured with ``make bench`` (bench/README.md)."""

    consumer_fetch_min_bytes: int = Field(default=64 * 1024, ge=1)
    consumer_fetch_max_wait_ms: int = Field(default=250, ge=0)


def database_url_variables(service: str) -> tuple[str, str]:
    """Where a service's database URL is read from, in order: its own variable, the shared one."""
    return f"SAGAKIT_{service.upper()}_DATABASE_URL", "SAGAKIT_DATABASE_URL"


def database_url_field(service: str) -> Any:
    """The ``database_url`` field of a service's settings class: its own database.

    Read from ``database_url_variables(service)``; by default the local stack's database of
    that service (``make up`` creates ``sagakit_<service>``).
    """
    return Field(
        default=f"postgresql+asyncpg://sagakit:sagakit@127.0.0.1:5432/sagakit_{service}",
        validation_alias=AliasChoices(*database_url_variables(service)),
    )


def kafka_client_options(settings: PlatformSettings) -> dict[str, Any]:
    """Connection and security options to pass to every aiokafka client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": f"{settings.service_name}-{settings.instance_id}",
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism or "PLAIN",
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return options
