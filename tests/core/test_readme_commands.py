"""Every command in the README's table runs exactly as written (issue 10, item 8).

Each is run with `--help` (or `make -n`), so nothing is served, synced or written.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.core.server_process import operator_env

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
COMMANDS = re.findall(r"^\| `((?:make|\./scripts/uv) [^`]*)` \|", README, flags=re.M)


def as_dry_run(command: str) -> list[str]:
    words = shlex.split(re.sub(r" \[.*?\]| KEY$", "", command))
    if words[0] == "make":
        return ["make", "-n", *words[1:]]
    return [*words, "--help"]


def test_the_readme_lists_its_commands() -> None:
    assert len(COMMANDS) >= 8
    assert any("cli.py sync" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_runs_as_written(command: str) -> None:
    result = subprocess.run(
        as_dry_run(command),
        cwd=ROOT,
        env=operator_env(UV_FROZEN="1"),  # never touch the lock file
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{command}: {result.stderr}"
