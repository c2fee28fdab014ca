"""The Docker way to run the demo, held to the code without a Docker engine.

The tests read deploy/docker-compose.yml, the Dockerfile and the configs next to them: every
``SAGAKIT_*`` variable a container gets is one its settings class reads (a typo fails here, not
silently at run time), every service is told where Kafka, Redis and its own database are, every
container is health-checked and restarted, and the image runs modules that exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from deploy.localstack.declared import companion_slots, service_names
from deploy.localstack.postgres import SETTINGS as POSTGRES_SETTINGS
from services import declarations
from shared.envfile import read_env_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
INIT_SQL = DEPLOY / "docker" / "postgres-init.sql"
STACK_ENV = DEPLOY / "docker" / "stack.env"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_RULES = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
GRAFANA = DEPLOY / "grafana"

SERVICES = service_names()
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}
DEFAULTED = re.compile(r"^\$\{(?P<name>\w+):?-(?P<default>[^}]*)\}$")


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def all_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def app_services() -> dict[str, dict[str, Any]]:
    """The containers built from our Dockerfile that run a service, by compose name (not the
    companions beside them: tests below)."""
    return {
        name: spec
        for name, spec in all_services().items()
        if "build" in spec and environment(spec).get("SERVICE") in SERVICES
    }


def environment(spec: dict[str, Any]) -> dict[str, str]:
    """A service's environment, written either as a mapping or as ``KEY=value`` lines."""
    raw = spec.get("environment") or {}
    if isinstance(raw, list):
        return dict(line.partition("=")[::2] for line in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def service_of(name: str) -> str:
    """The sagakit service a container runs (its SERVICE variable, read by the image's CMD)."""
    return environment(app_services()[name])["SERVICE"]


def settings_class(service: str) -> type[BaseSettings]:
    """The settings class the service declares."""
    return next(d.settings for d in declarations() if d.name == service)


def accepted_env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables pydantic-settings reads for ``cls``, as it names them."""
    prefix = cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)  # an alias is read as written: the prefix does not apply
        else:
            names.add(prefix + field_name)
    if not cls.model_config.get("case_sensitive", False):
        names = {name.upper() for name in names}
    return names


def interpolated(value: str) -> str:
    """``${NAME:-default}`` as compose reads it when NAME is not set."""
    match = DEFAULTED.match(value)
    return match["default"] if match else value


def published_ports(spec: dict[str, Any]) -> dict[int, int]:
    """Host port -> container port, from ``[ip:]host:container`` entries."""
    ports: dict[int, int] = {}
    for entry in spec.get("ports", []):
        *_, host, container = str(entry).split(":")
        ports[int(host)] = int(container)
    return ports


APPS = sorted(app_services())
EVERYTHING = sorted(all_services())


def test_the_compose_file_runs_every_service_and_two_payment_instances() -> None:
    services = [service_of(name) for name in APPS]
    assert sorted(set(services)) == sorted(SERVICES)
    assert services.count("payment") == 2


@pytest.mark.parametrize("name", APPS)
def test_every_sagakit_variable_a_container_gets_is_one_its_settings_read(name: str) -> None:
    accepted = accepted_env_names(settings_class(service_of(name)))
    given = {key for key in environment(app_services()[name]) if key.upper().startswith("SAGAKIT_")}
    assert given - accepted == set(), f"{name}: no settings field reads these"


@pytest.mark.parametrize("name", APPS)
def test_a_containers_environment_builds_settings_that_hold_its_values(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_of(name)
    cls = settings_class(service)
    for key in list(os.environ):
        if key.upper().startswith("SAGAKIT_"):
            monkeypatch.delenv(key)  # whatever this shell exported must not mask the file
    env = {key: interpolated(value) for key, value in environment(app_services()[name]).items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = cls()
    assert settings.model_dump()["service_name"] == service
    assert settings.model_dump()["database_url"] == env[f"SAGAKIT_{service.upper()}_DATABASE_URL"]
    assert settings.model_dump()["kafka_bootstrap"] == env["SAGAKIT_KAFKA_BOOTSTRAP"]


@pytest.mark.parametrize("name", APPS)
def test_every_service_is_told_where_kafka_redis_and_its_own_database_are(name: str) -> None:
    service = service_of(name)
    env = environment(app_services()[name])
    needed = {
        "SAGAKIT_KAFKA_BOOTSTRAP",
        "SAGAKIT_REDIS_URL",
        f"SAGAKIT_{service.upper()}_DATABASE_URL",
    }
    assert needed - env.keys() == set()
    kafka_advertised = environment(all_services()["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    for server in env["SAGAKIT_KAFKA_BOOTSTRAP"].split(","):
        assert f"://{server}" in kafka_advertised, f"{server} is not a listener Kafka advertises"
    for url in (env["SAGAKIT_REDIS_URL"], env[f"SAGAKIT_{service.upper()}_DATABASE_URL"]):
        assert urlsplit(url).hostname in all_services(), f"{url} names no compose service"


@pytest.mark.parametrize("name", APPS)
def test_every_service_uses_its_own_database_which_the_init_script_creates(name: str) -> None:
    service = service_of(name)
    url = urlsplit(environment(app_services()[name])[f"SAGAKIT_{service.upper()}_DATABASE_URL"])
    assert url.scheme == "postgresql+asyncpg"
    assert url.path == f"/sagakit_{service}"
    created = re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", INIT_SQL.read_text())
    assert (f"sagakit_{service}", url.username) in created
    assert f"CREATE ROLE {url.username} LOGIN PASSWORD '{url.password}'" in INIT_SQL.read_text()


@pytest.mark.parametrize("name", EVERYTHING)
def test_every_container_has_a_healthcheck_and_a_restart_policy(name: str) -> None:
    spec = all_services()[name]
    healthcheck = spec.get("healthcheck", {})
    assert healthcheck.get("test") and not healthcheck.get("disable")
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}
    assert spec.get("restart") in RESTART_POLICIES


@pytest.mark.parametrize("name", APPS)
def test_service_healthchecks_ask_for_readiness_on_the_port_the_service_listens_on(
    name: str,
) -> None:
    spec = app_services()[name]
    probe = " ".join(spec["healthcheck"]["test"])
    assert "/readyz" in probe
    assert 'os.environ["PORT"]' in probe  # the port CMD passes to the service
    assert int(environment(spec)["PORT"]) in published_ports(spec).values()


@pytest.mark.parametrize("name", EVERYTHING)
def test_depends_on_names_only_services_that_exist(name: str) -> None:
    depends_on = all_services()[name].get("depends_on", {})
    assert set(depends_on) - set(all_services()) == set()
    if isinstance(depends_on, dict):
        for dependency in depends_on.values():
            assert dependency["condition"] in {"service_healthy", "service_started"}


def test_the_image_is_python_3_11_slim_and_runs_as_a_non_root_user() -> None:
    instructions = DOCKERFILE.read_text().splitlines()
    assert "FROM python:3.11-slim" in instructions
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}


def test_the_image_installs_what_the_platform_and_the_reference_application_depend_on(
    tmp_path: Path,
) -> None:
    """The Dockerfile's requirements step, run on the files it copies before it: every
    dependency of both distributions (the explorer's jinja2 is the application's), and the
    platform's extras named in EXTRAS, but not the platform itself (its code is copied)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    step = re.search(r"^RUN (python -c .*?) > /tmp/requirements\.txt", text, re.MULTILINE)
    assert step, "no requirements step"
    for source, target in re.findall(r"^COPY (\S+) (\S+)$", text[: step.start()], re.MULTILINE):
        into = tmp_path / target / Path(source).name if target.endswith("/") else tmp_path / target
        into.parent.mkdir(parents=True, exist_ok=True)
        into.write_bytes((ROOT / source).read_bytes())
    ran = subprocess.run(
        ["sh", "-c", step[1]],
        cwd=tmp_path,
        env={**os.environ, "EXTRAS": "compression"},
        capture_output=True,
        text=True,
        check=True,
    )
    required = set(ran.stdout.split("\n")) - {""}
    platform = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    application = tomllib.loads((ROOT / "reference" / "pyproject.toml").read_text())["project"]
    expected = {*platform["dependencies"], *platform["optional-dependencies"]["compression"]}
    expected |= {d for d in application["dependencies"] if d != platform["name"]}
    assert required == expected
    assert {"jinja2>=3.1", "httpx>=0.27"} <= required


def test_the_dockerfile_cmd_runs_the_service_module_its_container_names() -> None:
    text = DOCKERFILE.read_text()
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)[-1])
    assert 'python -m "services.${SERVICE}"' in " ".join(cmd)
    default = re.search(r"\bSERVICE=(\w+)", text)
    assert default and (ROOT / "services" / default[1] / "__main__.py").is_file()
    for name in APPS:
        assert (ROOT / "services" / service_of(name) / "__main__.py").is_file(), name
        assert "command" not in app_services()[name], f"{name} overrides the image's CMD"


def test_prometheus_scrapes_every_service_instance() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name in APPS:
        assert f"{name}:{environment(app_services()[name])['PORT']}" in targets


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERT_RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"] if "alert" in rule]


def markdown_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped,
    spaces made hyphens."""
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_prometheus_loads_the_alert_rules_the_compose_file_mounts_next_to_its_config() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [ALERT_RULES.name]  # relative to the config's folder
    mounts = {
        source: target.removesuffix(":ro")
        for source, _, target in (v.partition(":") for v in all_services()["prometheus"]["volumes"])
    }
    config_in_container = Path(mounts[f"./prometheus/{PROMETHEUS_CONFIG.name}"])
    rules_in_container = config_in_container.parent / ALERT_RULES.name
    assert mounts[f"./prometheus/{ALERT_RULES.name}"] == str(rules_in_container)


def test_every_alert_has_a_runbook_section_in_the_operations_guide() -> None:
    anchors = markdown_anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        document, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert document == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in {document}"
        assert rule["annotations"]["summary"] and rule["labels"]["severity"], rule["alert"]


def test_every_alert_has_a_promtool_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases = [
        case
        for group in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "no case where these fire"
    assert names - quiet == set(), "no case where these stay quiet"


def test_the_alerts_query_metrics_the_operations_guide_lists() -> None:
    listed = OPERATIONS.read_text()
    for rule in alert_rules():
        for name in re.findall(r"\bsagakit_\w+", rule["expr"]):
            family = re.sub(r"_(count|sum|bucket)$", "", name)
            assert f"`{family}" in listed, f"{rule['alert']}: {family} is not in docs/operations.md"


def test_the_dashboard_lists_the_alerts_and_grafana_shows_prometheus_rules() -> None:
    dashboard = json.loads((GRAFANA / "dashboards/sagakit.json").read_text())
    queried = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert "ALERTS" in queried
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert provisioned["datasources"][0]["jsonData"]["manageAlerts"] is True


def test_stack_env_gives_the_host_the_ports_and_token_compose_publishes() -> None:
    env = read_env_file(STACK_ENV)
    published = {port for name in APPS for port in published_ports(app_services()[name])}
    instance_ports = {urlsplit(url).port for url in env["SAGAKIT_INSTANCE_URLS"].split(",")}
    assert instance_ports == published
    for service in SERVICES:
        assert urlsplit(env[f"SAGAKIT_{service.upper()}_URL"]).port in published
    token = environment(app_services()["order"])["SAGAKIT_ADMIN_TOKEN"]
    assert env["SAGAKIT_ADMIN_TOKEN"] == interpolated(token)


def test_the_grafana_dashboard_queries_the_provisioned_prometheus() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    dashboard = json.loads((GRAFANA / "dashboards/sagakit.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {uid}
    for metric in ("consumer_events", "dlq_published", "outbox_published"):
        assert any(f"sagakit_{metric}_total" in expr for expr in expressions)


def test_the_dashboards_first_row_shows_lag_dlq_size_processing_time_and_error_rate() -> None:
    dashboard = json.loads((GRAFANA / "dashboards/sagakit.json").read_text())
    first_row = [panel for panel in dashboard["panels"] if panel["gridPos"]["y"] == 0]
    queried = [" ".join(t["expr"] for t in panel["targets"]) for panel in first_row]
    assert len(queried) == 4 and sum(panel["gridPos"]["w"] for panel in first_row) == 24
    lag, dlq_size, processing, errors = queried
    assert "sagakit_consumer_lag_records" in lag
    assert "sagakit_dlq_records" in dlq_size
    assert "sagakit_handler_duration_seconds_bucket" in processing
    assert 'outcome="dead_lettered"' in errors and "sagakit_consumer_events_total" in errors


def test_redis_is_bounded_and_evicts_the_least_recently_used_keys() -> None:
    # It holds idempotency keys only, each one a shortcut the inbox table backs up: evicting
    # one costs an inbox lookup, while a full Redis without eviction refuses every write.
    command = all_services()["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert re.fullmatch(r"\d+mb", options["--maxmemory"])


def test_the_companions_services_declare_run_beside_them_and_their_settings_reach_them() -> None:
    """services/<name>/companions.py: the notification service's webhook receiver."""
    for slot in companion_slots():
        spec = all_services()[slot.companion.name]
        assert environment(spec)["SERVICE"] == slot.companion.module
        assert "/readyz" in " ".join(spec["healthcheck"]["test"])
        port = int(environment(spec)["PORT"])
        assert published_ports(spec) == {port: port}
        owner = environment(app_services()[slot.service])
        for key, value in slot.companion.settings.items():
            assert owner[key] == value.format(url=f"http://{slot.companion.name}:{port}")


def test_postgres_runs_with_the_local_stacks_settings() -> None:
    """Both stacks configure PostgreSQL alike (connections, checkpoint spacing)."""
    command = all_services()["postgres"]["command"]
    assert command[0] == "postgres"
    flags = command[1:]
    assert flags[::2] == ["-c"] * (len(flags) // 2)
    given = dict(flag.split("=", 1) for flag in flags[1::2])
    assert given == POSTGRES_SETTINGS
