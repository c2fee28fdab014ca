"""The reference system's services are found in their folders, and everything that runs or
checks the whole system follows: a service planted in a folder of its own (a second folder
of the ``services`` package, in a temporary directory) is run by the local stack, given a
database and an address, and listed by the generated files, with no other file edited.

Written to hold when more services sit beside the four: the planted one takes a port left."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from textwrap import dedent
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

import services
from deploy import configs
from deploy.demo.__main__ import services_scenarios
from deploy.localstack.__main__ import main as localstack_main
from deploy.localstack.component import Context
from deploy.localstack.declared import (
    DECLARED_FIRST_PORT,
    PORT_SLOTS,
    companion_slots,
    declared_services,
    instance_slots,
    service_names,
)
from deploy.localstack.postgres import Postgres
from deploy.localstack.profiles import PROFILES
from deploy.localstack.services import Services
from services.cli import service_commands
from shared.envfile import read_env_file

pytestmark = pytest.mark.unit

FOUR = ("order", "payment", "inventory", "shipping")


def plant(folder: Path, name: str, port: int, declared_name: str | None = None) -> None:
    """A throwaway service ``name`` in ``folder``: a declaration and nothing else."""
    package = folder / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(
        dedent(f"""\
            from pathlib import Path

            from services.events import CATALOGUE
            from shared.app.declaration import ServiceDeclaration

            service = ServiceDeclaration(
                name={declared_name or name!r},
                description="A throwaway service the discovery test plants.",
                port={port},
                migrations=Path(__file__).with_name("migrations"),
                catalogue=CATALOGUE,
                consumers={{}},
            )
        """)
    )


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second folder of ``services``' package: what is planted there is a service of it."""
    monkeypatch.setattr(services, "__path__", [*services.__path__, str(tmp_path)])
    before = set(sys.modules)
    yield tmp_path
    for module in set(sys.modules) - before:
        if module.startswith("services."):
            del sys.modules[module]


def a_free_port() -> int:
    """A port no service declares and no instance takes: where a planted service goes (the
    last of the room, so services added beside the four leave it alone)."""
    taken = {DECLARED_FIRST_PORT + slot.offset for slot in instance_slots()}
    return max(set(range(DECLARED_FIRST_PORT, DECLARED_FIRST_PORT + PORT_SLOTS)) - taken)


def test_the_four_come_first_by_declared_port_and_keep_their_ports() -> None:
    # Services added later declare ports after the four's, so they come after them.
    assert service_names()[:4] == FOUR
    ports = {name: PROFILES["dev"].service_port(name) for name in FOUR}
    assert ports == {"order": 8000, "payment": 8001, "inventory": 8002, "shipping": 8003}
    slots = {slot.name: slot.offset for slot in instance_slots()}
    assert {name: slots[name] for name in FOUR} == {
        "order": 0,
        "payment": 1,
        "inventory": 2,
        "shipping": 3,
    }
    declared = {s.offset for s in declared_services()}
    assert slots["payment-2"] == min(set(range(PORT_SLOTS)) - declared)  # 8004 with the four


def test_the_checked_in_files_list_what_the_declarations_say() -> None:
    assert configs.main(["--check"]) == 0


def test_a_stale_file_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "prometheus.yml"
    text = configs.FILES[1].path.read_text().replace("- shipping:8003\n", "")
    stale.write_text(text)
    region = replace(configs.FILES[1], path=stale)
    current, generated = configs.regenerated(region)
    assert current != generated and "- shipping:8003" in generated
    assert "- shipping:8003" not in current


def test_a_planted_service_is_run_addressed_and_listed(planted: Path, tmp_path: Path) -> None:
    before = service_names()
    processes_before = len(instance_slots()) + len(companion_slots())
    port = a_free_port()  # 8009 beside the four
    plant(planted, "ledger", port)
    assert service_names() == (*before, "ledger")

    # The local stack: its port (the declared one's offset), its address, its database.
    bench = PROFILES["bench"]
    ctx = Context(replace(bench, state_dir=tmp_path / "state"), {})
    on_bench = bench.first_service_port + port - DECLARED_FIRST_PORT
    assert bench.service_port("ledger") == on_bench
    plan = Services().plan(ctx)
    planned = {p for p, _ in plan.needs.ports}
    assert on_bench in planned and {28000, 28001, 28002, 28003} < planned
    assert len(planned) == processes_before + 1  # the companions moved to the ports left
    env = Services().env(ctx)
    assert env["SAGAKIT_LEDGER_URL"] == f"http://127.0.0.1:{on_bench}"
    assert env["SAGAKIT_PAYMENT_URL"] == "http://127.0.0.1:28001"  # the others keep theirs
    assert f"http://127.0.0.1:{on_bench}" in env["SAGAKIT_INSTANCE_URLS"].split(",")
    server = Context(ctx.profile, {"SAGAKIT_POSTGRES_URL": "postgresql://u:p@db:5432/postgres"})
    databases = Postgres().env(server)
    assert urlsplit(databases["SAGAKIT_LEDGER_DATABASE_URL"]).path == "/sagakit_ledger"
    assert urlsplit(databases["SAGAKIT_ORDER_DATABASE_URL"]).path == "/sagakit_order"

    # The generated files, regenerated (in memory): the container, the target, the database.
    texts = {r.path.name: configs.regenerated(r)[1] for r in configs.FILES}
    compose = yaml.safe_load(texts["docker-compose.yml"])["services"]
    ledger = compose["ledger"]["environment"]
    assert (ledger["SERVICE"], ledger["PORT"]) == ("ledger", str(port))
    assert compose["ledger"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert ledger["SAGAKIT_LEDGER_DATABASE_URL"].endswith("@postgres:5432/sagakit_ledger")
    assert {"order", "payment-1", "payment-2", "inventory", "shipping"} < set(compose)
    prometheus = yaml.safe_load(texts["prometheus.yml"])
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert f"ledger:{port}" in targets and "payment-2:8001" in targets
    assert "CREATE DATABASE sagakit_ledger OWNER sagakit;" in texts["postgres-init.sql"]
    stack_env = planted / "stack.env"
    stack_env.write_text(texts["stack.env"])
    values = read_env_file(stack_env)
    assert values["SAGAKIT_LEDGER_URL"] == f"http://127.0.0.1:{port}"
    assert f"http://127.0.0.1:{port}" in values["SAGAKIT_INSTANCE_URLS"].split(",")


def test_a_service_on_the_second_instances_port_moves_it_to_the_first_port_left(
    planted: Path,
) -> None:
    second = next(slot.offset for slot in instance_slots() if slot.name == "payment-2")
    plant(planted, "ledger", DECLARED_FIRST_PORT + second)
    slots = {slot.name: slot.offset for slot in instance_slots()}
    assert slots["ledger"] == second and slots["payment-2"] > second
    assert len(set(slots.values())) == len(slots)


def test_a_declaration_is_named_after_its_folder_and_ports_are_its_own(planted: Path) -> None:
    plant(planted, "ledger", a_free_port(), declared_name="books")
    with pytest.raises(ValueError, match="named after its folder"):
        services.declarations()


def test_two_services_on_one_port_are_refused(planted: Path) -> None:
    plant(planted, "ledger", 8003)
    with pytest.raises(ValueError, match="same port"):
        services.declarations()


def test_a_port_beyond_the_stacks_room_is_refused(planted: Path) -> None:
    plant(planted, "ledger", 8010)
    with pytest.raises(ValueError, match="8000-8009"):
        declared_services()


def test_a_folder_without_app_py_is_no_service(planted: Path) -> None:
    before = service_names()
    (planted / "helpers").mkdir()
    (planted / "helpers" / "__init__.py").write_text("")
    assert service_names() == before


async def test_make_demo_runs_the_scenarios_a_service_declares_in_its_folder(
    planted: Path,
) -> None:
    plant(planted, "ledger", a_free_port())
    (planted / "ledger" / "demo.py").write_text(
        dedent("""\
            SHOWN = []

            async def balance(env):
                SHOWN.append(env["SAGAKIT_LEDGER_URL"])

            SCENARIOS = [("The ledger's balance", balance)]
        """)
    )
    scenarios = services_scenarios()
    title, run = scenarios[-1]  # the planted service's port is the last one taken
    assert title == "The ledger's balance"
    await run(None, {"SAGAKIT_LEDGER_URL": "http://127.0.0.1:8005"})  # type: ignore[arg-type]
    assert sys.modules["services.ledger.demo"].SHOWN == ["http://127.0.0.1:8005"]


def test_sagakit_has_the_commands_a_service_declares_in_its_folder(planted: Path) -> None:
    before = service_commands()
    plant(planted, "ledger", a_free_port())
    (planted / "ledger" / "cli.py").write_text(
        dedent("""\
            import typer

            app = typer.Typer(help="The ledger's books.")
            COMMANDS = [("ledger", app)]
        """)
    )
    found = service_commands()
    assert found[: len(before)] == before  # the planted service's port is the last one taken
    assert found[len(before) :] == [("ledger", sys.modules["services.ledger.cli"].app)]


def test_the_grafana_dashboard_groups_by_the_service_label_and_names_no_service() -> None:
    dashboard = configs.DEPLOY / "grafana" / "dashboards" / "sagakit.json"
    panels = json.loads(dashboard.read_text())["panels"]
    expressions = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert any("by (service" in expr for expr in expressions)
    for expr in expressions:
        assert not re.search(r"\b(service|instance)\s*=~?\s*\"", expr), expr


def test_a_companion_a_service_declares_in_its_folder_runs_beside_it(
    planted: Path, tmp_path: Path
) -> None:
    """services/<name>/companions.py: a process the stacks run beside the service, on a port
    the instances leave, its settings handed to the services (the notification receiver's
    SAGAKIT_NOTIFICATION_WEBHOOK_URL, say)."""
    plant(planted, "ledger", a_free_port())
    (planted / "ledger" / "companions.py").write_text(
        dedent("""\
            from deploy.localstack.declared import Companion

            COMPANIONS = [
                Companion("ledger-bank", "ledger.bank", {"SAGAKIT_LEDGER_BANK": "{url}/api"})
            ]
        """)
    )
    slot = next(s for s in companion_slots() if s.companion.name == "ledger-bank")
    taken = {s.offset for s in instance_slots()} | {
        s.offset for s in companion_slots() if s != slot
    }
    assert slot.service == "ledger" and slot.offset not in taken

    ctx = Context(replace(PROFILES["bench"], state_dir=tmp_path / "state"), {})
    url = f"http://127.0.0.1:{PROFILES['bench'].first_service_port + slot.offset}"
    env = Services().env(ctx)
    assert (env["SAGAKIT_LEDGER_BANK_URL"], env["SAGAKIT_LEDGER_BANK"]) == (url, f"{url}/api")
    assert url not in env["SAGAKIT_INSTANCE_URLS"].split(",")  # not an instance of a service
    assert url.rsplit(":", 1)[1] in {str(p) for p, _ in Services().plan(ctx).needs.ports}
    # The test stack runs no services, hence no companions and none of their settings.
    assert "SAGAKIT_LEDGER_BANK" not in Services().env(Context(PROFILES["test"], {}))


def test_python_m_deploy_localstack_holds_and_releases_an_instance_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(PROFILES, "dev", replace(PROFILES["dev"], state_dir=tmp_path))
    held = tmp_path / "services" / "held" / "analytics"

    assert localstack_main(["hold", "analytics"]) == 0 and held.exists()
    assert localstack_main(["release", "analytics"]) == 0 and not held.exists()
    assert localstack_main(["hold", "nobody"]) == 1
    assert "One of order, payment" in capsys.readouterr().err
