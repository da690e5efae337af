"""The deadline sweeper: fires what is overdue, at most a tick late, never what was forgotten,
on the loop that armed it."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from core.deadlines import Sweeper


async def test_a_deadline_fires_after_it_passes_and_at_most_a_tick_late() -> None:
    sweeper = Sweeper(tick=0.02)
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    start = loop.time()
    sweeper.watch(start + 0.05, lambda: fired.append(loop.time()))
    await asyncio.sleep(0.2)
    assert len(fired) == 1
    assert 0.05 <= fired[0] - start <= 0.05 + 0.02 + 0.05  # the tick, plus scheduling slack


async def test_a_forgotten_deadline_never_fires_and_the_sweep_stops_when_idle() -> None:
    sweeper = Sweeper(tick=0.01)
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    sweeper.watch(loop.time() + 0.02, lambda: fired.append("forgotten")).forget()
    sweeper.watch(loop.time() + 0.02, lambda: fired.append("kept"))
    await asyncio.sleep(0.1)
    assert fired == ["kept"]
    tasks = {t.get_coro().__qualname__ for t in asyncio.all_tasks()}  # type: ignore[union-attr]
    assert "_LoopSweep._sweep" not in tasks, "nothing watched: no task wakes"


async def test_one_failing_callback_does_not_stop_the_others() -> None:
    sweeper = Sweeper(tick=0.01)
    loop = asyncio.get_running_loop()
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    sweeper.watch(loop.time(), broken)
    sweeper.watch(loop.time(), lambda: fired.append("other"))
    with capture_logs() as logs:
        await asyncio.sleep(0.05)
    assert fired == ["other"]
    assert [line["event"] for line in logs] == ["core.deadline.failed"]


def test_each_event_loop_sweeps_its_own() -> None:
    sweeper = Sweeper(tick=0.01)
    fired: list[int] = []

    async def arm(n: int) -> None:
        loop = asyncio.get_running_loop()
        sweeper.watch(loop.time() + 0.01, lambda: fired.append(n))
        await asyncio.sleep(0.05)

    asyncio.run(arm(1))
    asyncio.run(arm(2))  # a new loop: the first loop's sweep is gone with it
    assert fired == [1, 2]
