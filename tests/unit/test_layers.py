"""The architecture's layers, held by the imports the code actually makes (read from its AST).

- the domain models (``services/*/model.py`` and ``services/order/deadlines.py``) are pure:
  the standard library's non-I/O modules, ``shared.contracts.money`` and their own service's model;
- a service imports no other service; what the reference system's services share is not a
  service (``REFERENCE_COMMONS``: its event catalogue, its ids, its faults' body), imports no
  service, and is what the services import of each other's world;
- the platform (``shared``) imports no service, and neither the local stack nor the benchmark;
- the platform's floors, lowest first (``FLOORS``): a module imports its own floor and those
  below it, never one above; the ground (``shared.settings`` and the like) imports no floor;
- no two modules of the platform import each other, directly or around a circle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "app.py").exists())
PURE = sorted(
    [*(ROOT / "services").glob("*/model.py"), ROOT / "services" / "order" / "deadlines.py"]
)
IO_STDLIB = {
    "asyncio", "http", "io", "multiprocessing", "os", "pathlib", "select", "selectors",
    "shutil", "socket", "sqlite3", "ssl", "subprocess", "threading", "urllib",
}  # fmt: skip
PURE_SHARED = {"shared.contracts.money"}
GATHERING = {"__init__.py", "asyncapi.py", "cli.py"}
"""What gathers the services (their declarations, the AsyncAPI document, sagakit's commands)."""
REFERENCE_COMMONS = sorted(p for p in (ROOT / "services").glob("*.py") if p.name not in GATHERING)
"""services/events.py (the catalogue), ids.py, faults.py: shared by the reference services."""
FLOORS = [
    "contracts",
    "observability",
    "storage",
    "publishing",
    "consuming",
    "app",
    "ops",
    "testing",
]


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute, including those under ``TYPE_CHECKING``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                module = ".".join([*package, node.module or ""]).rstrip(".")
            else:
                module = node.module or ""
            yield module
            # ``from shared.storage import platform_schema`` imports a module too.
            for alias in node.names:
                if (ROOT / module.replace(".", "/") / f"{alias.name}.py").exists():
                    yield f"{module}.{alias.name}"


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def top(module: str, depth: int = 1) -> str:
    return ".".join(module.split(".")[:depth])


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_domain_model_imports_nothing_that_does_io_nor_anything_of_failure_injection(
    path: Path,
) -> None:
    own = f"services.{path.parent.name}.model"
    wrong = []
    for module in imports(path):
        if top(module) in sys.stdlib_module_names:
            if top(module) in IO_STDLIB:
                wrong.append(module)
        elif module not in PURE_SHARED | {own, "__future__"}:
            wrong.append(module)
    assert wrong == [], f"{path.name} must stay pure"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    others = {f"services.{name}" for name in SERVICES if name != service}
    found = {
        (path.name, module)
        for path in python_files(f"services/{service}")
        for module in imports(path)
        if top(module, 2) in others
    }
    assert found == set()


@pytest.mark.parametrize("path", REFERENCE_COMMONS, ids=lambda p: p.name)
def test_what_the_reference_services_share_imports_no_service(path: Path) -> None:
    services = {f"services.{name}" for name in SERVICES}
    assert {module for module in imports(path) if top(module, 2) in services} == set()


def test_the_reference_catalogue_is_not_a_service_and_every_service_uses_it() -> None:
    assert ROOT / "services" / "events.py" in REFERENCE_COMMONS
    for service in SERVICES:
        found = {m for path in python_files(f"services/{service}") for m in imports(path)}
        assert "services.events" in found, service


def test_the_platform_imports_no_service_nor_the_local_stack_nor_the_benchmark() -> None:
    found = {
        (str(path.relative_to(ROOT)), module)
        for path in python_files("shared")
        for module in imports(path)
        if top(module) in {"services", "deploy", "bench", "tests"}
    }
    assert found == set()


def test_the_checks_see_real_imports() -> None:
    # Guards the guard: an AST walk that found nothing would pass every test above.
    assert "shared.contracts.money" in set(imports(ROOT / "services" / "payment" / "model.py"))
    assert "shared.app.declaration" in set(imports(ROOT / "services" / "payment" / "app.py"))
    assert len(PURE) == len(SERVICES) + 1


def floor(module: str) -> int:
    """Where a ``shared`` module stands: -1 for the ground, else its index in ``FLOORS``."""
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 2 and parts[1] in FLOORS else -1


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_folder_of_the_platform_is_a_floor() -> None:
    folders = {p.name for p in (ROOT / "shared").iterdir() if (p / "__init__.py").exists()}
    assert folders == set(FLOORS)


def test_a_floor_of_the_platform_imports_none_above_it() -> None:
    found = {
        (module_name(path), module)
        for path in python_files("shared")
        for module in imports(path)
        if top(module) == "shared" and floor(module) > floor(module_name(path))
    }
    assert found == set()


def platform_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in python_files("shared"):
        name = module_name(path)
        graph[name] = {m for m in imports(path) if top(m) == "shared" and m != name}
    return {n: {m for m in deps if m in graph} for n, deps in graph.items()}


def test_no_module_of_the_platform_imports_itself_around_a_circle() -> None:
    graph = platform_graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_a_module_imported_from_its_package_counts_as_imported(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("from shared.storage import migrations\n")
    assert "shared.storage.migrations" in set(imports(source))


def test_the_floor_checks_see_real_imports() -> None:
    graph = platform_graph()
    assert "shared.contracts.events" in graph["shared.contracts.topics"]
    assert (
        floor("shared.app.declaration")
        > floor("shared.consuming.consumer")
        > floor("shared.contracts.events")
    )
