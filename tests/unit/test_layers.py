"""The architecture's layers, held by the imports the code actually makes (read from its AST).

- the domain models (``services/*/model.py`` and ``services/order/deadlines.py``) are pure:
  the standard library's non-I/O modules, ``shared.money`` and their own service's model;
- a service imports no other service;
- the platform (``shared``) imports no service, and neither the local stack nor the benchmark.
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
PURE_SHARED = {"shared.money"}


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, absolute, including those under ``TYPE_CHECKING``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                yield ".".join([*package, node.module or ""]).rstrip(".")
            elif node.module:
                yield node.module


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
    assert "shared.money" in set(imports(ROOT / "services" / "payment" / "model.py"))
    assert "shared.declaration" in set(imports(ROOT / "services" / "payment" / "app.py"))
    assert len(PURE) == len(SERVICES) + 1
