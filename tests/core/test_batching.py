"""The batcher that page views hand work to: batches, bounds, drops and shutdown."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter

from core import batching
from core.batching import Batcher
from core.tasks import BackgroundTasks
from tests.support.waiting import eventually


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def flush(self, batch: list[int]) -> None:
        await self.gate.wait()
        self.batches.append(batch)


def batcher(sink: Sink, *, queue_size: int = 100, batch_size: int = 10) -> Batcher[int]:
    dropped = Counter("dropped", "dropped items", registry=CollectorRegistry())
    return Batcher(
        sink.flush,
        queue_size=queue_size,
        batch_size=batch_size,
        flush_seconds=0.01,
        dropped=dropped,
        full_event="test.queue_full",
    )


async def written(batch: Batcher[int]) -> None:
    async def unwritten() -> int:
        return batch.unwritten

    await eventually(unwritten, lambda count: count == 0)


def dropped(batch: Batcher[int]) -> float:
    value: float = batch._dropped._value.get()
    return value


async def test_items_are_flushed_in_order_in_bounded_batches() -> None:
    sink = Sink()
    batch = batcher(sink, batch_size=10)
    for item in range(25):
        assert batch.submit(item)
    assert (batch.queued, batch.unwritten) == (25, 25)
    task = asyncio.create_task(batch.run())
    await written(batch)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [len(b) for b in sink.batches] == [10, 10, 5]
    assert [item for b in sink.batches for item in b] == list(range(25))


async def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    sink = Sink()
    batch = batcher(sink, queue_size=3)
    results = [batch.submit(item) for item in range(5)]
    assert results == [True, True, True, False, False]
    assert dropped(batch) == 2
    await batch.drain()
    assert sink.batches == [[0, 1, 2]]


async def test_an_idle_runner_wakes_for_the_next_item() -> None:
    sink = Sink()
    batch = batcher(sink)
    task = asyncio.create_task(batch.run())
    await asyncio.sleep(0.02)  # waiting, nothing queued
    assert sink.batches == []
    batch.submit(7)
    await written(batch)
    assert sink.batches == [[7]]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_items_in_flight_count_as_unwritten_and_cancel_finishes_them_then_the_rest() -> None:
    sink = Sink()
    sink.gate.clear()  # the store hangs
    batch = batcher(sink, batch_size=2)
    for item in range(5):
        batch.submit(item)
    task = asyncio.create_task(batch.run())
    await asyncio.sleep(0.03)
    assert (batch.queued, batch.unwritten) == (3, 5), "two being flushed, three queued"
    task.cancel()
    await asyncio.sleep(0.03)
    assert not task.done(), "shutdown waits for the batch in flight"
    sink.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.batches == [[0, 1], [2, 3], [4]], "each item once, the batch in flight first"
    assert batch.unwritten == 0


async def test_shutdown_cancelling_again_and_again_does_not_cut_the_batch_in_flight() -> None:
    sink = Sink()
    sink.gate.clear()
    batch = batcher(sink, batch_size=3)
    for item in range(4):
        batch.submit(item)
    tasks = BackgroundTasks()
    tasks.spawn(batch.run(), name="writer")
    await asyncio.sleep(0.03)  # the first batch is in flight, held by the store
    loop = asyncio.get_running_loop()
    loop.call_later(0.6, sink.gate.set)  # the store answers after two of stop's rounds
    await tasks.stop()
    assert sink.batches == [[0, 1, 2], [3]]
    assert batch.unwritten == 0


async def test_a_store_that_never_answers_is_given_up_on_within_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batching, "FINISH_SECONDS", 0.2)
    sink = Sink()
    sink.gate.clear()  # never opens
    batch = batcher(sink)
    batch.submit(1)
    task = asyncio.create_task(batch.run())
    await asyncio.sleep(0.03)
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started < 1.0
    assert sink.batches == []
