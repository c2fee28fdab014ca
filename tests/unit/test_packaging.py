"""What a wheel of sagakit installs: the platform and its command line, not the application.

The repository holds two distributions: the platform (``pyproject.toml``: ``shared``, the
``sagakit`` script) and the reference application (``reference/pyproject.toml``: the
services, the local stack, the benchmark, and the entry points that show the reference
system to ``sagakit``). ``make install`` installs both; a wheel user has the first only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
APPLICATION = ("services", "deploy", "bench")
PLATFORM_GROUPS = ("topics", "groups", "dlq", "stack")
PLATFORM_COMMANDS = ("produce", "tail", "audit", "chaos", "verify")
REFERENCE_GROUPS = ("orders", "sagas", "bulk", "analytics")
# Offline, with this environment's setuptools (the test extra asks for one that builds wheels).
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
PIP_WHEEL += ["--no-index", "--quiet"]


def checkout_copy(into: Path) -> Path:
    """The checkout's files as a clone has them (tracked, or new and not ignored): a build in
    the checkout itself would pack whatever a stale ``build/`` holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet committed is listed too
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def test_the_wheel_holds_the_platform_and_its_migrations_only(tmp_path: Path) -> None:
    source = checkout_copy(tmp_path / "checkout")
    built = subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(tmp_path / "wheels"), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheels").glob("sagakit-*.whl")
    names = [PurePosixPath(name) for name in zipfile.ZipFile(wheel).namelist()]

    tops = {name.parts[0] for name in names if not name.parts[0].endswith(".dist-info")}
    assert tops == {"shared"}
    assert PurePosixPath("shared/ops/cli/app.py") in names
    migrations = PurePosixPath("shared/storage/platform_migrations")
    assert migrations / "env.py" in names
    assert migrations / "script.py.mako" in names
    assert [n for n in names if n.parent == migrations / "versions" and n.suffix == ".py"]

    [listed] = [n for n in names if n.name == "entry_points.txt"]
    entry_points = ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(str(listed)).decode())
    assert entry_points.sections() == ["console_scripts"]
    assert dict(entry_points["console_scripts"]) == {"sagakit": "shared.ops.cli.app:main"}


# This interpreter as a wheel user's: the application's folders not on sys.path (the platform
# is found by its own editable install's finder), the application's entry points not installed.
WITHOUT_APPLICATION = f"""
import importlib.metadata, sys
sys.path[:] = [p for p in sys.path if p and p != {str(ROOT)!r}]
real = importlib.metadata.entry_points
def entry_points(**selection):
    found = real(**selection)
    return importlib.metadata.EntryPoints(
        e for e in found if e.dist is None or e.dist.name != "sagakit-reference"
    )
importlib.metadata.entry_points = entry_points
for module in {APPLICATION!r}:
    try:
        __import__(module)
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit(module + " is still importable")
from shared.ops.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def sagakit_without_application(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_APPLICATION, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def listed(help_text: str) -> set[str]:
    """The commands a --help lists: the first word of each row of its boxes."""
    return {
        line.strip("│ ").split()[0]
        for line in help_text.splitlines()
        if line.startswith("│ ") and line.strip("│ ")
    }


def test_without_the_reference_application_sagakit_has_the_platform_commands_only(
    tmp_path: Path,
) -> None:
    ran = sagakit_without_application(tmp_path, "--help")
    assert ran.returncode == 0, ran.stderr
    commands = listed(ran.stdout)
    assert {*PLATFORM_GROUPS, *PLATFORM_COMMANDS} <= commands
    assert commands.isdisjoint(REFERENCE_GROUPS)

    dlq = sagakit_without_application(tmp_path, "dlq", "--help")
    assert dlq.returncode == 0, dlq.stderr
    assert listed(dlq.stdout).isdisjoint({"groups", "replay-group"})


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("stack", "status"), "the local stack is part of a sagakit checkout"),
        (("chaos",), "sagakit chaos is part of a sagakit checkout"),
        (("verify",), "sagakit chaos is part of a sagakit checkout"),
    ],
)
def test_without_the_reference_application_its_commands_say_so_in_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    ran = sagakit_without_application(tmp_path, *args)
    assert ran.returncode == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert len(ran.stderr.splitlines()) == 1, ran.stderr
    assert says in ran.stderr
