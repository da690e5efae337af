"""Invalid configuration stops start-up with one clear line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import ConfigurationError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("CONTENTFUL_", "REDIS_", "BRIDGE_", "SEGMENT_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_need_nothing() -> None:
    settings = load_settings()
    assert settings.store.url is None
    assert settings.contentful.configured is False
    assert settings.service.port == 8080


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTENTFUL_SPACE_ID": "abc"}, "CONTENTFUL_ACCESS_TOKEN is required"),
        ({"CONTENTFUL_ACCESS_TOKEN": "t"}, "CONTENTFUL_SPACE_ID is required"),
        ({"CONTENTFUL_CDA_URL": "cdn.contentful.com"}, "CONTENTFUL_CDA_URL: "),
        ({"CONTENTFUL_CDA_URL": "https://cdn.contentful.com/spaces"}, "CONTENTFUL_CDA_URL: "),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL: must start with redis://"),
        ({"BRIDGE_PORT": "eighty"}, "BRIDGE_PORT: "),
        ({"BRIDGE_LOG_LEVEL": "loud"}, "BRIDGE_LOG_LEVEL: "),
        ({"REDIS_KEY_PREFIX": "a:b"}, "REDIS_KEY_PREFIX: "),
        ({"BRIDGE_CORS_ORIGINS": "shop.example.com"}, "BRIDGE_CORS_ORIGINS: "),
        ({"BRIDGE_CORS_ORIGINS": "https://shop.example.com/app"}, "BRIDGE_CORS_ORIGINS: "),
        ({"BRIDGE_KEEP_ALIVE_SECONDS": "0"}, "BRIDGE_KEEP_ALIVE_SECONDS: "),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    text = str(caught.value.code)
    assert message in text
    assert "\n" not in text


def test_server_defaults_suit_production(monkeypatch: pytest.MonkeyPatch) -> None:
    service = load_settings().service
    assert service.keep_alive_seconds > 60, "outlives AWS ALB's default idle timeout"
    assert service.cors_origin_list == (), "CORS closed by default"
    assert 0 < service.graceful_shutdown_seconds < 30, "inside Kubernetes' default grace period"
    monkeypatch.setenv("BRIDGE_CORS_ORIGINS", " https://a.example/ , http://127.0.0.1:3000")
    assert load_settings().service.cors_origin_list == (
        "https://a.example",
        "http://127.0.0.1:3000",
    )


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BRIDGE_PORT=9099\nCONTENTFUL_ENVIRONMENT=staging\n")
    settings = load_settings()
    assert settings.service.port == 9099
    assert settings.contentful.environment == "staging"


def test_cli_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTENTFUL_", "REDIS_"))}
    env["CONTENTFUL_SPACE_ID"] = "abc"
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "microbridge: configuration error: CONTENTFUL_ACCESS_TOKEN is required when "
        "CONTENTFUL_SPACE_ID is set"
    ]
