"""The service as an operator runs it: a subprocess on a free loopback port."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    prefixes = ("CONTENTFUL_", "REDIS_", "BRIDGE_", "SEGMENT_", "DECISIONS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def operator_env(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: without the test run's virtualenv on PATH."""
    venv = str(ROOT / ".venv")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if venv not in p)
    env = {k: v for k, v in clean_env().items() if k != "VIRTUAL_ENV"}
    return {**env, "PATH": path, **extra}


def limit_files(soft: int) -> Callable[[], None]:
    def apply() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


class ServerProcess:
    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str],
        port: int,
        cwd: Path,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = cwd / "server.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            start_new_session=True,  # `make run` → uv → python: stop() signals the whole group
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError(f"server did not come up: {self.output()}")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log_file.close()

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")


def serve(
    tmp_path: Path,
    *,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    preexec: Callable[[], None] | None = None,
) -> ServerProcess:
    """`cli.py serve` (or `command`) on BRIDGE_PORT, healthy when returned."""
    port = port or free_port()
    environment = clean_env(BRIDGE_PORT=str(port), **(env or {}))
    server = ServerProcess(
        command or [sys.executable, str(ROOT / "cli.py"), "serve"],
        environment,
        port,
        tmp_path,
        preexec,
    )
    try:
        server.wait_healthy()
    except AssertionError:
        server.stop()
        raise
    return server
