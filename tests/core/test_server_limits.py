"""HTTP server limits, against the real service in a subprocess (issue 10, item 7)."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from tests.core.server_process import ServerProcess, limit_files, serve
from tests.support.redis_server import RedisServer

UPLOAD_HEAD = (
    b"POST /v1/assemble HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
    b"Content-Length: 200\r\n\r\n"
)


@contextlib.contextmanager
def running(tmp_path: Path, redis_server: RedisServer, **env: str) -> Iterator[ServerProcess]:
    server = serve(
        tmp_path, env={"REDIS_URL": redis_server.url, "REDIS_KEY_PREFIX": "mbsrv", **env}
    )
    try:
        yield server
    finally:
        server.stop()


def read_answer(sock: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
    """Read one answer until the server closes the connection."""
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_slow_headers_get_a_json_408_and_the_connection_closes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with running(tmp_path, redis_server, BRIDGE_HEADER_TIMEOUT_SECONDS="1") as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bri")
            status, headers, body = read_answer(sock)
        with socket.create_connection(("127.0.0.1", server.port)) as idle:
            idle_status, _, _ = read_answer(idle)  # never sends a byte
    assert status == idle_status == 408
    assert headers[b"connection"] == b"close"
    assert orjson.loads(body)["error"] == "RequestTimeout"


def test_a_slow_body_gets_a_json_408_and_the_connection_closes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with running(tmp_path, redis_server, BRIDGE_BODY_TIMEOUT_SECONDS="1") as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(UPLOAD_HEAD + b'{"template": ')
            status, headers, body = read_answer(sock)
        answer = httpx.post(f"{server.url}/v1/assemble", json={"template": "home"}, timeout=10)
    assert status == 408
    assert headers[b"connection"] == b"close"
    assert orjson.loads(body) == {
        "error": "RequestTimeout",
        "detail": "the request body did not arrive within 1 s",
    }
    assert answer.status_code == 200, "a normal request is unaffected"


def test_keep_alive_outlasts_uvicorns_five_second_default(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A connection idle for 6 s is still open (75 s default, above a load balancer's 60 s)."""
    with running(tmp_path, redis_server) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/healthz")
        first = connection.getresponse().read()
        sock = connection.sock
        time.sleep(6)
        connection.request("GET", "/healthz")  # RemoteDisconnected if the server closed it
        second = connection.getresponse().read()
        same_socket = connection.sock is sock
        connection.close()
    assert first == second == b'{"status":"ok"}'
    assert same_socket


def test_many_slow_connections_at_a_low_file_limit_do_not_stop_answers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """1,200 slow connections at `ulimit -n 1024`: a normal request still gets an answer."""
    server = serve(
        tmp_path,
        env={"REDIS_URL": redis_server.url, "REDIS_KEY_PREFIX": "mbsrv"},
        preexec=limit_files(1024),
    )
    slow: list[socket.socket] = []
    try:
        for _ in range(1200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            slow.append(sock)
        during = httpx.get(f"{server.url}/healthz", timeout=15)
        for sock in slow:
            sock.close()
        slow.clear()
        after = _healthy_eventually(server)
    finally:
        for sock in slow:
            sock.close()
        server.stop()
    assert during.status_code in (200, 503)
    if during.status_code == 503:
        assert during.json()["error"] == "TooManyConnections"
        assert during.headers["retry-after"] == "1"
    assert after == 200
    assert "Too many open files" not in server.output()


def _healthy_eventually(server: ServerProcess) -> int:
    status = 0
    for _ in range(50):
        status = httpx.get(f"{server.url}/healthz", timeout=15).status_code
        if status == 200:
            break
    return status


def test_sigterm_with_an_unfinished_upload_exits_within_the_bound(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with running(tmp_path, redis_server, BRIDGE_GRACEFUL_SHUTDOWN_SECONDS="2") as server:
        upload = socket.create_connection(("127.0.0.1", server.port))
        upload.sendall(UPLOAD_HEAD + b'{"template": ')
        answers: list[int] = []
        # an in-flight request that ends normally before the process stops
        inflight = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{server.url}/v1/assemble", json={"template": "home"}, timeout=10
                ).status_code
            )
        )
        inflight.start()
        inflight.join()
        server.terminate()
        # graceful bound (2 s) + lifespan shutdown; a hang would run to the body timeout (30 s)
        code = server.proc.wait(timeout=15)
        upload.close()
    assert answers == [200]
    assert code in (0, -signal.SIGTERM), server.output()  # uvicorn re-raises the signal
    output = server.output()
    assert "graceful shutdown exceeded" in output
    assert '"service.stopped"' in output, "the lifespan shut down cleanly"


def test_head_on_probes(tmp_path: Path, redis_server: RedisServer) -> None:
    with running(tmp_path, redis_server) as server:
        answers = [
            httpx.head(f"{server.url}{path}", timeout=10) for path in ("/healthz", "/readyz")
        ]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.content for a in answers] == [b"", b""]
