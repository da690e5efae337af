"""The served OpenAPI schema is the contract: schemathesis finds no 5xx, no undocumented status
and no answer that violates the schema, with and without the admin token.

The service runs as operators run it (`cli.py serve`, a real Redis, every webhook and the admin
API enabled); schemathesis's own CLI drives every operation with a bounded number of generated
examples and all of its checks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.server_process import ServerProcess, serve
from tests.support.redis_server import RedisServer

TOKEN = "schema-admin-token"
EXAMPLES = "12"


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("schema")
    env = {
        "REDIS_URL": redis_server.url,
        "REDIS_KEY_PREFIX": "mbschema",
        "BRIDGE_ADMIN_TOKEN": TOKEN,
        "BRIDGE_LOG_LEVEL": "error",
        "BRIDGE_SNAPSHOT_PATH": str(folder / "last-good.json"),
        "CONTENTFUL_WEBHOOK_SECRETS": "contentful-secret",
        "SEGMENT_WEBHOOK_SECRETS": "segment-secret",
        "SEGMENT_WRITE_KEYS": "browser-key",
    }
    server: ServerProcess = serve(folder, env=env)
    try:
        yield server.url
    finally:
        server.stop()


def schemathesis(url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("st", path=str(Path(sys.executable).parent))
    assert binary is not None, "schemathesis is a dev dependency: run `make test`"
    command = [binary, "run", f"{url}/openapi.json", "--checks", "all"]
    command += ["--max-examples", EXAMPLES, "--seed", "20261202", "--no-color"]
    for header in headers:
        command += ["-H", header]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.timeout(900)
def test_the_schema_holds_with_the_admin_token(service: str) -> None:
    run = schemathesis(service, f"Authorization: Bearer {TOKEN}")
    assert run.returncode == 0, run.stdout[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated is not None, run.stdout[-2000:]
    assert int(generated[1]) > 500
    assert generated[1] == generated[2]


@pytest.mark.timeout(900)
def test_the_schema_holds_without_a_token(service: str) -> None:
    run = schemathesis(service)
    assert run.returncode == 0, run.stdout[-6000:]
