"""docs/operations.md lists every setting and every metric the service has."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from prometheus_client import REGISTRY
from pydantic_settings import BaseSettings

import app  # noqa: F401  (imports every package that defines settings or metrics)

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "operations.md").read_text()
PACKAGES = ("core", "integration", "webhooks", "segment_sync", "assembly")


def _settings_classes() -> list[type[BaseSettings]]:
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{package}.{info.name}")
    found: list[type[BaseSettings]] = []
    stack = list(BaseSettings.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in PACKAGES:
            found.append(cls)
    return found


def env_names() -> set[str]:
    names = set()
    for cls in _settings_classes():
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            alias = field.validation_alias if isinstance(field.validation_alias, str) else None
            names.add((alias or f"{prefix}{name}").upper())
    return names


def test_every_setting_is_documented() -> None:
    missing = sorted(n for n in env_names() if n not in DOC)
    assert not missing, f"add to docs/operations.md: {missing}"


def test_every_metric_is_documented() -> None:
    ours = {m.name for m in REGISTRY.collect() if m.name.startswith("microbridge_")}
    documented = set(re.findall(r"`(microbridge_[a-z_]+)`", DOC))
    missing = sorted(n for n in ours if n not in documented and f"{n}_total" not in documented)
    assert ours
    assert not missing, f"add to docs/operations.md: {missing}"
