"""RESP encoding of commands, for the few hot paths that talk to Redis on raw connections.

redis-py's `pack_command` handles every argument type and a memoryview split for large
values; a page view's read sends a dozen short strings, which this packs at a fraction of
the cost (bench: `make bench`, docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable

Arg = str | bytes | int | float


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    return repr(arg).encode() if isinstance(arg, float) else str(arg).encode()


def pack(*args: Arg) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encode(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def pack_all(commands: Iterable[tuple[Arg, ...]]) -> bytes:
    """Several commands in one write (a pipeline without MULTI)."""
    return b"".join(pack(*command) for command in commands)
