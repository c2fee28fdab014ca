"""What ``up`` started and who uses it, kept in the state dir so ``down`` stops exactly that.

``started.json`` says, per component, whether an ``up`` started it (and whether that ``up``
came from a person or from a test session) or found the user's own. Test sessions also hold
a lease (``leases/<pid>``) while they run: several sessions may share one test stack, and the
last one to leave stops what sessions started.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from deploy.localstack.processes import is_alive

__all__ = ["Leases", "StartedRecord", "state_lock"]

How = Literal["started", "yours"]
By = Literal["person", "session"]


class StartedRecord:
    """Per component: ``started`` (by whom) or ``yours`` (and where)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "started.json"
        try:
            self._entries: dict[str, dict[str, str]] = json.loads(self._path.read_text())
        except FileNotFoundError:
            self._entries = {}

    def how(self, component: str) -> How | None:
        entry = self._entries.get(component)
        return None if entry is None else "yours" if entry["how"] == "yours" else "started"

    def started_by(self, component: str, by: By) -> bool:
        entry = self._entries.get(component, {})
        return entry.get("how") == "started" and entry.get("by", "person") == by

    def where(self, component: str) -> str:
        return self._entries.get(component, {}).get("where", "")

    @property
    def empty(self) -> bool:
        return not self._entries

    def mark_started(self, component: str, by: By) -> None:
        self._entries[component] = {"how": "started", "by": by}
        self._save()

    def mark_yours(self, component: str, where: str) -> None:
        self._entries[component] = {"how": "yours", "where": where}
        self._save()

    def forget(self, component: str) -> None:
        self._entries.pop(component, None)
        self._save()

    def _save(self) -> None:
        # Saved after every change, so a failed `up` still lets `down` stop what did start.
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps(self._entries, indent=2, sort_keys=True) + "\n")


class Leases:
    """The test sessions (by pid) using a stack; a dead session's lease does not count."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / "leases"

    def take(self, pid: int) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / str(pid)).touch()

    def release(self, pid: int) -> None:
        (self._dir / str(pid)).unlink(missing_ok=True)

    def holders(self) -> list[int]:
        """Pids of live sessions; leases of sessions that died are dropped."""
        live = []
        for lease in self._dir.glob("*") if self._dir.exists() else ():
            if lease.name.isdigit() and is_alive(int(lease.name)):
                live.append(int(lease.name))
            else:
                lease.unlink(missing_ok=True)
        return live


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per profile (two terminals, or test sessions)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
