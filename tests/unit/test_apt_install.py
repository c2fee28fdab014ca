"""Installing Debian packages for the local stack starts none of their system daemons
(deploy.localstack.prereqs): Debian's redis-server and prometheus packages start a service on
install, on the very ports (6379, 9090) the dev stack and its tools use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.localstack import prereqs

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self, policy: Path) -> None:
        self.policy = policy
        self.policies_seen: list[str | None] = []

    def __call__(self, argv: list[str], **_: Any) -> None:
        if argv[:2] == ["apt-get", "install"]:
            seen = self.policy.read_text() if self.policy.exists() else None
            self.policies_seen.append(seen)


def test_apt_installs_with_a_policy_that_starts_no_daemon_and_removes_it_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy-rc.d"
    recorder = Recorder(policy)
    monkeypatch.setattr(prereqs, "run", recorder)
    monkeypatch.setattr(prereqs, "POLICY_RC_D", policy)

    prereqs._apt_install(["redis-server"])

    (seen,) = recorder.policies_seen
    assert seen is not None and "exit 101" in seen
    assert not policy.exists()


def test_a_policy_the_machine_has_already_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    recorder = Recorder(policy)
    monkeypatch.setattr(prereqs, "run", recorder)
    monkeypatch.setattr(prereqs, "POLICY_RC_D", policy)

    prereqs._apt_install(["prometheus"])

    assert recorder.policies_seen == ["#!/bin/sh\nexit 0\n"]
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"
