"""What this machine must have before anything starts, checked all at once.

Missing Debian packages (PostgreSQL, Redis) are installed when running as root, without
starting their system daemons (``POLICY_RC_D``); everything else that is missing (Java, Maven,
a free port) stops ``up`` at once with the command that fixes it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deploy.localstack import ports
from deploy.localstack.errors import StackError
from deploy.localstack.processes import run

__all__ = [
    "Needs",
    "ensure",
    "ensure_chromium",
    "ensure_prometheus",
    "find_chromium",
    "find_java",
    "java_problem",
    "maven_problem",
]

JAVA_FIX = "apt-get install -y openjdk-17-jre-headless, or set JAVA_HOME to a Java 17+ install"

# Debian's invoke-rc.d (and deb-systemd-invoke) ask this script whether a package may start
# its service; 101 means "no". Without it, installing redis-server or prometheus starts a
# system daemon on 6379 or 9090: the dev stack's own ports, taken before it starts.
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_NO_DAEMONS = "#!/bin/sh\n# sagakit: no daemon starts while it installs packages\nexit 101\n"


@dataclass(frozen=True)
class Needs:
    """What starting one component on this machine requires."""

    packages: tuple[str, ...] = ()
    """Debian packages that are missing; installed with apt-get when running as root."""
    ports: tuple[tuple[int, str], ...] = ()
    """(port, what to do instead) pairs: each port must be free."""
    problems: tuple[str, ...] = ()
    """Blockers the component found itself, each naming its fix."""


def ensure(needs: Iterable[Needs]) -> None:
    """Fail with every problem at once, or install the missing packages and return."""
    needs = list(needs)
    problems = [problem for need in needs for problem in need.problems]
    problems += [
        _port_problem(port, hint)
        for need in needs
        for port, hint in need.ports
        if not ports.is_free(port)
    ]
    packages = sorted({package for need in needs for package in need.packages})
    if packages and os.geteuid() != 0:
        problems.append(
            f"missing Debian packages {', '.join(packages)}: install them with\n"
            f"    sudo apt-get update && "
            f"sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {' '.join(packages)}"
        )
    if problems:
        raise StackError("cannot start the local stack:\n  - " + "\n  - ".join(problems))
    if packages:
        _apt_install(packages)


def find_java() -> Path | None:
    """JAVA_HOME's java when JAVA_HOME is set, else the java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        return java if os.access(java, os.X_OK) else None
    found = shutil.which("java")
    return Path(found) if found else None


def java_problem() -> str | None:
    """Why Kafka cannot run on this machine's Java, or None when it can."""
    java = find_java()
    if java is None:
        where = f" in JAVA_HOME={os.environ['JAVA_HOME']}" if os.environ.get("JAVA_HOME") else ""
        return f"Java 17 or newer not found{where}: {JAVA_FIX}"
    major = _java_major(java)
    if major < 17:
        return f"{java} is Java {major}, Kafka 4.1 needs Java 17 or newer: {JAVA_FIX}"
    return None


def maven_problem() -> str | None:
    """Maven fetches the Kafka jars once; afterwards they come from the cache."""
    if shutil.which("mvn"):
        return None
    return "Maven not found (needed once, to fetch the Kafka jars): apt-get install -y maven"


def find_chromium() -> Path | None:
    """Debian's chromium on PATH (the explorer's browser test drives it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when it is missing and this runs as root
    (``StackError`` naming the command otherwise)."""
    found = find_chromium()
    if found is None:
        ensure([Needs(packages=("chromium",))])
        found = find_chromium()
    if found is None:
        raise StackError("apt-get installed chromium, but no chromium is on PATH")
    return found


def ensure_prometheus() -> tuple[Path, Path]:
    """Debian's ``prometheus`` and ``promtool`` (the alert rules' tests run both), installed
    with apt-get when missing and this runs as root (``StackError`` naming the command
    otherwise)."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if None in found:
        ensure([Needs(packages=("prometheus",))])
        found = shutil.which("prometheus"), shutil.which("promtool")
    prometheus, promtool = found
    if prometheus is None or promtool is None:
        raise StackError("apt-get installed prometheus, but prometheus or promtool is not on PATH")
    return Path(prometheus), Path(promtool)


def _java_major(java: Path) -> int:
    banner = run([str(java), "-version"], what="java -version").stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if not found:
        return 0
    major = int(found[1])
    # Java 8 and older call themselves "1.8".
    return int(found[2] or 0) if major == 1 else major


def _port_problem(port: int, hint: str) -> str:
    holder = ports.owner(port)
    return f"port {port} is already in use{f' by {holder}' if holder else ''}: {hint}"


def _apt_install(packages: list[str]) -> None:
    print(f"installing {' '.join(packages)} with apt-get (once per machine)...", flush=True)
    run(["apt-get", "update"], what="apt-get update")
    # A policy the machine has already is its owner's: kept as it is.
    ours = not POLICY_RC_D.exists()
    if ours:
        POLICY_RC_D.write_text(_NO_DAEMONS)
        POLICY_RC_D.chmod(0o755)
    try:
        run(
            ["apt-get", "install", "-y", *packages],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            what="apt-get install",
        )
    finally:
        if ours:
            POLICY_RC_D.unlink(missing_ok=True)
