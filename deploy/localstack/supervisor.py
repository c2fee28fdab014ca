"""Keep the service instances running, as a container's restart policy would.

Run as ``python -m deploy.localstack.supervisor STATE_DIR ENV_FILE NAME=MODULE:PORT ...``:
it starts one process per instance (``python -m services.<module> --port PORT``, with
``SAGAKIT_INSTANCE_ID=NAME`` and the stack's environment), starts again any that dies, and
keeps ``STATE_DIR/services.json`` up to date (pid, port, restarts, last exit) for
``make status``. On SIGTERM it stops the instances gracefully (SIGTERM, then SIGKILL after
a grace period) and exits. Each instance logs to ``STATE_DIR/logs/NAME.log``.

An instance can be held (``hold``: a file ``STATE_DIR/held/NAME``): the supervisor stops it
gracefully and starts it no more until it is released (``release``), and its stop counts as
no restart. ``make demo`` holds the analytics service so as to rebuild its read model (its
consumer group must have no members), then lets it go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.localstack.stackenv import read_stack_env

__all__ = ["STATE_DIR_VAR", "Instance", "hold", "parse_instance", "read_status", "release"]

STATUS_FILE = "services.json"
HELD_DIR = "held"
STATE_DIR_VAR = "SAGAKIT_SUPERVISOR_DIR"
"""What the demo hands its scenarios as the supervisor's folder, when the stack has one."""
GRACE_SECONDS = 25.0
TICK_SECONDS = 0.2
# An instance that dies within this long after starting is crashing in a loop: wait longer
# before the next start instead of burning a core.
QUICK_DEATH_SECONDS = 5.0
MAX_RESTART_DELAY_SECONDS = 10.0


@dataclass
class Instance:
    """One service process the supervisor keeps alive."""

    name: str
    module: str
    port: int
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    next_start_at: float = 0.0
    held: bool = False
    delay: float = field(default=0.5, repr=False)
    stopping_since: float | None = field(default=None, repr=False)


def parse_instance(spec: str) -> Instance:
    """``payment-2=payment:8004`` -> an instance of ``services.payment`` on port 8004."""
    name, _, rest = spec.partition("=")
    module, _, port = rest.partition(":")
    if not (name and module and port.isdigit()):
        raise SystemExit(f"bad instance {spec!r}: expected NAME=MODULE:PORT")
    return Instance(name, module, int(port))


def hold(state_dir: Path, name: str) -> None:
    """Have the supervisor of ``state_dir`` stop instance ``name`` and keep it stopped."""
    (state_dir / HELD_DIR).mkdir(parents=True, exist_ok=True)
    (state_dir / HELD_DIR / name).touch()


def release(state_dir: Path, name: str) -> None:
    """Let the supervisor of ``state_dir`` start instance ``name`` again."""
    (state_dir / HELD_DIR / name).unlink(missing_ok=True)


def read_status(state_dir: Path) -> list[dict[str, object]]:
    """What the supervisor last wrote (empty when it never ran)."""
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return list(data.get("instances", []))


class Supervisor:
    def __init__(self, state_dir: Path, env: dict[str, str], instances: list[Instance]) -> None:
        self.state_dir = state_dir
        self.env = env
        self.instances = instances
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        while not self.stopping:
            for instance in self.instances:
                self._tend(instance)
            self._write_status()
            time.sleep(TICK_SECONDS)
        self._stop_all()
        self._write_status()

    def _on_signal(self, *_: object) -> None:
        self.stopping = True

    def _tend(self, instance: Instance) -> None:
        instance.held = (self.state_dir / HELD_DIR / instance.name).exists()
        if instance.held:
            self._let_go(instance)
            return
        process = self.processes.get(instance.name)
        if process is not None:
            code = process.poll()
            if code is None:
                return
            # It died: count it, and come back after a delay that grows while it keeps dying.
            del self.processes[instance.name]
            instance.last_exit, instance.pid = code, None
            instance.restarts += 1
            quick = time.monotonic() - instance.started_at < QUICK_DEATH_SECONDS
            instance.delay = min(instance.delay * 2, MAX_RESTART_DELAY_SECONDS) if quick else 0.5
            instance.next_start_at = time.monotonic() + instance.delay
            self._log(
                f"{instance.name} exited with {code}; restart #{instance.restarts} "
                f"in {instance.delay:.1f} s"
            )
        if time.monotonic() >= instance.next_start_at:
            self._start(instance)

    def _start(self, instance: Instance) -> None:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "SAGAKIT_INSTANCE_ID": instance.name}
        argv = [sys.executable, "-m", f"services.{instance.module}", "--port", str(instance.port)]
        with open(logs / f"{instance.name}.log", "ab") as log:
            self.processes[instance.name] = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        instance.pid = self.processes[instance.name].pid
        instance.started_at = time.monotonic()

    def _let_go(self, instance: Instance) -> None:
        """Stop a held instance as ``_stop_all`` would, without blocking the others' care."""
        process = self.processes.get(instance.name)
        if process is None:
            return
        code = process.poll()
        if code is not None:
            del self.processes[instance.name]
            instance.last_exit, instance.pid, instance.stopping_since = code, None, None
            self._log(f"{instance.name} held: stopped with {code}")
        elif instance.stopping_since is None:
            process.send_signal(signal.SIGTERM)
            instance.stopping_since = time.monotonic()
        elif time.monotonic() - instance.stopping_since > GRACE_SECONDS:
            self._log(f"{instance.name} did not stop within {GRACE_SECONDS:.0f} s: killing it")
            process.kill()

    def _stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"{name} did not stop within {GRACE_SECONDS:.0f} s: killing it")
                process.kill()
                process.wait()
        for instance in self.instances:
            instance.pid = None
        self.processes.clear()

    def _write_status(self) -> None:
        status = {
            "supervisor_pid": os.getpid(),
            "stopping": self.stopping,
            "instances": [
                {
                    key: value
                    for key, value in asdict(instance).items()
                    if key not in {"delay", "stopping_since"}
                }
                for instance in self.instances
            ],
        }
        path = self.state_dir / STATUS_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status, indent=1))
        temporary.replace(path)  # atomic: readers never see half a file

    @staticmethod
    def _log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} supervisor: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    state_dir, env_file = Path(argv[0]), Path(argv[1])
    state_dir.mkdir(parents=True, exist_ok=True)
    instances = [parse_instance(spec) for spec in argv[2:]]
    Supervisor(state_dir, read_stack_env(env_file), instances).run()


if __name__ == "__main__":
    main(sys.argv[1:])
