"""`make run`, `cli.py serve` and `uvicorn app:app` honour the settings, and log only JSON
(issue 10, item 8)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import orjson

from tests.core.server_process import ROOT, ServerProcess, free_port, operator_env, serve
from tests.support.redis_server import RedisServer

PAGE = {"template": "home", "user": {"anonymousId": "a1"}}
BIG = {"template": "home", "context": {"attributes": {"padding": "x" * 3000}}}


def test_cli_serve_honours_bridge_port_and_max_body(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    server = serve(
        tmp_path,
        port=port,
        env={
            "REDIS_URL": redis_server.url,
            "REDIS_KEY_PREFIX": "mbentry",
            "BRIDGE_MAX_BODY_BYTES": "2048",
        },
    )
    try:
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/assemble", json=PAGE, timeout=10)
        big = httpx.post(f"http://127.0.0.1:{port}/v1/assemble", json=BIG, timeout=10)
    finally:
        server.stop()
    assert ok.status_code == 200
    assert big.status_code == 413
    assert big.json()["detail"] == "request body exceeds 2048 bytes"


def test_make_run_honours_bridge_port(tmp_path: Path, redis_server: RedisServer) -> None:
    server = serve(
        tmp_path,
        command=["make", "-s", "-C", str(ROOT), "run"],
        env={
            "REDIS_URL": redis_server.url,
            "REDIS_KEY_PREFIX": "mbentry",
            "BRIDGE_SNAPSHOT_PATH": str(tmp_path / "snapshot.json"),
            "PATH": operator_env()["PATH"],
        },
    )
    try:
        answer = httpx.post(f"{server.url}/v1/assemble", json=PAGE, timeout=10)
    finally:
        server.stop()
    assert answer.status_code == 200


def test_plain_uvicorn_honours_max_body_logs_json_and_logs_fallback_once(
    tmp_path: Path,
) -> None:
    """`uvicorn app:app` with the store down: every line is JSON (uvicorn's own, an aborted
    upload's), the body limit is the setting's, and five fallback answers log one line."""
    port = free_port()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(ROOT)]
    server = serve(
        tmp_path,
        port=port,
        command=[*command, "--port", str(port), "--http", "core.server:BridgeHttpProtocol"],
        env={"REDIS_URL": dead_redis, "BRIDGE_MAX_BODY_BYTES": "2048"},
    )
    try:
        answers = [httpx.post(f"{server.url}/v1/assemble", json=PAGE, timeout=10) for _ in range(5)]
        big = httpx.post(f"{server.url}/v1/assemble", json=BIG, timeout=10)
        _abort_an_upload(server)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        _wait_for(server, '"http.request_aborted"')
    finally:
        server.stop()
    sources = {s["source"] for a in answers for s in a.json()["slots"]}
    assert sources == {"fallback"}
    assert big.status_code == 413
    assert 'microbridge_fallback_total{cause="library not loaded"} 5.0' in metrics
    lines = [line for line in server.output().splitlines() if line.strip()]
    events = [orjson.loads(line) for line in lines]  # raises on any line that is not JSON
    names = [e["event"] for e in events]
    assert names.count("assembly.fallback_started") == 1
    assert "http.request_aborted" in names
    assert any(e.get("logger") == "uvicorn.error" for e in events), "uvicorn's lines too"


def _abort_an_upload(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/assemble HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"template": '
        )


def _wait_for(server: ServerProcess, text: str) -> None:
    for _ in range(100):
        if text in server.output():
            return
        httpx.get(f"{server.url}/healthz", timeout=10)  # a beat of real work, not a sleep
    raise AssertionError(f"{text} not logged: {server.output()}")
