"""The notify outbox (store/notify/outbox.py): per target in order, bounded (oldest dropped, counted), retries hold
their place, and what was put and not done survives reopening the file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.notify.outbox import Outbox

TARGETS = ("mqtt", "webhook:a", "webhook:b")

# An operation: ("put", target) | ("deliver", target) | ("retry", target) | ("fail", target) | ("reopen", "")
operations = st.lists(st.one_of(
    st.tuples(st.sampled_from(["put", "put", "deliver", "retry", "fail"]), st.sampled_from(TARGETS)),
    st.just(("reopen", ""))), max_size=40)


async def _run_model(path: Path, ops: list[tuple[str, str]], bound: int) -> None:
    """Run ``ops`` on a real outbox and on a list-per-target model; they must agree after every step."""
    outbox = await Outbox.open(path, max_items=bound)
    model: dict[str, list[bytes]] = {t: [] for t in TARGETS}
    delivered: dict[str, list[bytes]] = {t: [] for t in TARGETS}
    dropped = {t: 0 for t in TARGETS}
    serial = 0
    try:
        for op, target in ops:
            if op == "reopen":
                await outbox.close()
                outbox = await Outbox.open(path, max_items=bound)
                continue
            if op == "put":
                serial += 1
                payload = f"{target}-{serial}".encode()
                await outbox.put(target, payload, {"n": serial})
                model[target].append(payload)
                if len(model[target]) > bound:
                    del model[target][0]
                    dropped[target] += 1
            else:
                item = await outbox.next(target, wait_s=0)
                if not model[target]:
                    assert item is None, f"{target} gave {item} from an empty queue"
                    continue
                assert item is not None and item.payload == model[target][0], "not the oldest item of its target"
                if op == "deliver":
                    await outbox.done(item.id)
                    delivered[target].append(model[target].pop(0))
                elif op == "fail":
                    await outbox.drop(item.id, "refused")
                    model[target].pop(0)
                else:  # a retry due at once keeps its place: the next next() gives it again
                    await outbox.retry_later(item.id, 0, "timeout")
                    again = await outbox.next(target, wait_s=0)
                    assert again is not None and again.id == item.id and again.attempts == item.attempts + 1
            for t in TARGETS:
                assert outbox.counts(t).queued == len(model[t])
                assert [i for i in delivered[t]] == sorted(delivered[t], key=lambda p: int(p.split(b"-")[-1]))
        # Counters count since the (last) open; the file holds exactly the model's queues.
        for t in TARGETS:
            left = []
            while (item := await outbox.next(t, wait_s=0)) is not None:
                left.append(item.payload)
                await outbox.done(item.id)
            assert left == model[t]
    finally:
        await outbox.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, bound=st.integers(1, 4))
def test_each_target_is_delivered_in_order_bounded_and_survives_reopening(tmp_path: Path,
                                                                          ops: list[tuple[str, str]],
                                                                          bound: int) -> None:
    path = tmp_path / f"outbox-{time.monotonic_ns()}.sqlite3"
    asyncio.run(_run_model(path, ops, bound))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(puts=st.integers(0, 30), bound=st.integers(1, 10))
def test_the_bound_drops_the_oldest_and_counts_them(tmp_path: Path, puts: int, bound: int) -> None:
    async def run() -> None:
        outbox = await Outbox.open(tmp_path / f"o-{time.monotonic_ns()}.sqlite3", max_items=bound)
        try:
            for n in range(puts):
                await outbox.put("t", str(n).encode())
            counts = outbox.counts("t")
            assert (counts.published, counts.queued, counts.dropped) == (puts, min(puts, bound),
                                                                         max(0, puts - bound))
            item = await outbox.next("t", wait_s=0)
            assert (item is None) == (puts == 0)
            if item is not None:
                assert item.payload == str(max(0, puts - bound)).encode()  # the oldest kept
        finally:
            await outbox.close()

    asyncio.run(run())


async def test_a_retry_holds_back_the_items_behind_it_until_it_is_due(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.sqlite3")
    try:
        first = await outbox.put("w", b"1")
        await outbox.put("w", b"2")
        await outbox.retry_later(first, 0.3, "HTTP 503")
        assert await outbox.next("w", wait_s=0.05) is None, "the second must not overtake the first"
        started = time.monotonic()
        item = await outbox.next("w", wait_s=5)
        assert item is not None and item.id == first and item.last_error == "HTTP 503"
        assert 0.2 < time.monotonic() - started < 2
        counts = outbox.counts("w")
        assert (counts.retried, counts.last_error) == (1, "HTTP 503")
        await outbox.drop(first, "HTTP 400")
        assert outbox.counts("w").failed == 1 and outbox.health()["w"]["queued"] == 1
    finally:
        await outbox.close()


async def test_next_waits_for_a_put_and_returns_none_when_closed(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.sqlite3")
    waiter = asyncio.create_task(outbox.next("mqtt"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await outbox.put("mqtt", b"x", {"topic": "sht/events"})
    item = await asyncio.wait_for(waiter, 2)
    assert item is not None and item.meta == {"topic": "sht/events"}
    idle = asyncio.create_task(outbox.next("other"))
    await asyncio.sleep(0.05)
    await outbox.close()
    assert await asyncio.wait_for(idle, 2) is None


async def test_a_removed_target_is_discarded_and_counted(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.sqlite3")
    try:
        for n in range(3):
            await outbox.put("webhook:gone", str(n).encode())
        assert await outbox.discard("webhook:gone", "no longer configured") == 3
        assert outbox.counts("webhook:gone").dropped == 3 and await outbox.next("webhook:gone", wait_s=0) is None
    finally:
        await outbox.close()
