"""The platform's settings a run measured, read from the code itself: every upper-case
number of the ``shared`` modules (linger, poll and commit intervals, batch sizes...), the
outbox relay's defaults, the settings' defaults and what the stack overrode, the partitions
of the real topics and the instances running. Read, never copied: a tuning changes them
here without anyone editing the benchmark."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import Counter
from collections.abc import Mapping
from typing import Any

import shared
from shared.publishing.outbox import OutboxRelay
from shared.settings import PlatformSettings

__all__ = ["constants", "platform_settings"]

_SCALARS = (bool, int, float, str)
# Environment values that are addresses or secrets, not tuning.
_NOT_TUNING = ("_URL", "_URLS", "_TOKEN", "_PASSWORD", "_BOOTSTRAP", "_PROFILE")


def _is_setting(name: str, value: object) -> bool:
    # Numbers only: the modules' strings are names (channels, headers, suffixes), not knobs.
    return name.isupper() and not name.startswith("_") and isinstance(value, int | float)


def constants() -> dict[str, dict[str, Any]]:
    """Per ``shared`` module, its upper-case numeric constants."""
    found: dict[str, dict[str, Any]] = {}
    for module_info in pkgutil.walk_packages(shared.__path__, prefix="shared."):
        module = importlib.import_module(module_info.name)
        values = {n: v for n, v in vars(module).items() if _is_setting(n, v)}
        if values:
            found[module_info.name] = values
    return found


def _relay_defaults() -> dict[str, Any]:
    parameters = inspect.signature(OutboxRelay.__init__).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty and isinstance(p.default, _SCALARS)
    }


def _settings_defaults() -> dict[str, Any]:
    return {
        name: field.default
        for name, field in PlatformSettings.model_fields.items()
        if isinstance(field.default, _SCALARS) and "url" not in name and "bootstrap" not in name
    }


def platform_settings(
    env: Mapping[str, str], instances: Mapping[str, int | None], partitions: int | None
) -> dict[str, Any]:
    """What the run's system was configured with, from the code and the stack's settings."""
    return {
        "topic_partitions": partitions,
        "instances": dict(Counter(name.split("-")[0] for name in instances)),
        "settings_defaults": _settings_defaults(),
        "stack_overrides": {
            key: value
            for key, value in env.items()
            if key.startswith("SAGAKIT_") and not key.endswith(_NOT_TUNING)
        },
        "outbox_relay_defaults": _relay_defaults(),
        "constants": constants(),
    }
