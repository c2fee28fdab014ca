"""The alert rules as Prometheus reads them: Debian's promtool checks the compose Prometheus'
config and its rules, and runs deploy/prometheus/alerts_test.yml (each alert fed the series
that should fire it, and their healthy neighbours).

promtool comes from Debian's ``prometheus`` package, installed with apt-get when missing and
running as root (``deploy.localstack.prereqs.ensure_prometheus``); elsewhere the tests skip,
naming the command that installs it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.localstack.errors import StackError
from deploy.localstack.prereqs import ensure_prometheus

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL_TIMEOUT_S = 120.0
"""promtool answers in about a second; the cap is only reached when something is wrong."""


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return ensure_prometheus()[1]
    except StackError as error:
        pytest.skip(f"promtool is needed to check the alert rules: {error}")


def run_promtool(promtool: Path, *args: str) -> str:
    """promtool's output; the test fails with it when promtool exits non-zero."""
    done = subprocess.run(
        [str(promtool), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_promtool_finds_the_prometheus_config_and_its_rule_file_valid(promtool: Path) -> None:
    output = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert "1 rule files found" in output


def test_promtool_finds_every_alert_rule_valid(promtool: Path) -> None:
    output = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS" in output


def test_every_alert_fires_on_its_promtool_case_and_not_on_the_healthy_ones(
    promtool: Path,
) -> None:
    output = run_promtool(promtool, "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output
