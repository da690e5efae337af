"""The README and the served API description stay true."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from redis.asyncio import Redis

from tests.support.app import make_settings, running_app
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def readme_curl_bodies() -> list[dict[str, object]]:
    text = (ROOT / "README.md").read_text()
    bodies = re.findall(r"/v1/assemble .*?-d '(.*?)'", text, flags=re.S)
    return [json.loads(body) for body in bodies]


async def test_readme_curls_show_two_visitors_with_different_content(
    redis: Redis, redis_server: RedisServer
) -> None:
    bodies = readme_curl_bodies()
    assert len(bodies) == 2
    async with running_app(make_settings(redis_server.url)) as (_, client):
        answers = [(await client.post("/v1/assemble", json=b)).json() for b in bodies]
    heroes = [a["slots"][0] for a in answers]
    assert heroes[0]["variant"] != heroes[1]["variant"]
    assert all(h["source"] == "variant" for h in heroes)


def test_readme_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:24])
    assert "make run" in first_screen
    assert "make test" in first_screen
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


async def test_openapi_describes_assemble(redis: Redis, redis_server: RedisServer) -> None:
    async with running_app(make_settings(redis_server.url)) as (_, client):
        response = await client.get("/openapi.json")
        docs = await client.get("/docs")
    schema = response.json()
    body = schema["paths"]["/v1/assemble"]["post"]["requestBody"]["content"]["application/json"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    request = schema["components"]["schemas"][ref]
    assert {"template", "slots", "user", "context", "locale"} <= set(request["properties"])
    assert "AssembleResponse" in schema["components"]["schemas"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    assert docs.status_code == 200


def test_the_module_index_lists_every_module_with_its_docstring() -> None:
    spec = importlib.util.spec_from_file_location("module_index", ROOT / "scripts/module_index.py")
    assert spec is not None
    assert spec.loader is not None
    index = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(index)
    current = (ROOT / "docs" / "modules.md").read_text()
    assert current == index.render(), "run `uv run python scripts/module_index.py`"
    assert "`assembly/targeting/compiler.py`" in current  # a nested module is listed too
