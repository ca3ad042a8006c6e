"""The ingest byte budget: all-or-nothing, first come first served, per node and store-wide."""

from __future__ import annotations

import asyncio

import pytest

from store.ingest.budget import BudgetWaitExpired, ByteBudget, IngestBudget


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_reservation_is_all_or_nothing_and_first_come_first_served():
    budget = ByteBudget(100)
    await budget.acquire(60)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        await budget.acquire(size)
        order.append(name)

    big = asyncio.create_task(take("big", 70))
    await _settle()
    small = asyncio.create_task(take("small", 10))  # would fit now, but the big one came first
    await _settle()
    assert order == [] and budget.used == 60 and budget.waiting == 2
    budget.release(60)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and budget.used == 80


async def test_a_waiter_that_gives_up_holds_nothing_and_lets_the_next_in():
    budget = ByteBudget(100)
    await budget.acquire(50)
    big = asyncio.create_task(budget.acquire(80))
    await _settle()
    small = asyncio.create_task(budget.acquire(40))
    await _settle()
    big.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(small, 1)
    assert budget.used == 90 and budget.waiting == 0


async def test_more_than_the_capacity_is_refused_at_once():
    with pytest.raises(ValueError, match="cannot reserve 101 bytes of a 100-byte budget"):
        await ByteBudget(100).acquire(101)


async def test_one_node_holding_its_share_does_not_stall_another():
    budget = IngestBudget(total_bytes=300, per_node_bytes=200)
    async with budget.reserve("greedy", 200):
        second = asyncio.create_task(_hold(budget, "greedy", 50))  # waits on its own node's budget
        await _settle()
        async with asyncio.timeout(1), budget.reserve("other", 100):
            assert budget.total.used == 300
        assert not second.done()
    await asyncio.wait_for(second, 1)
    assert budget.total.used == 0 and budget.stats().nodes == 0


async def test_a_wait_that_expires_holds_nothing():
    budget = IngestBudget(total_bytes=300, per_node_bytes=200)
    async with budget.reserve("a", 200), budget.reserve("b", 100):
        with pytest.raises(BudgetWaitExpired):
            async with budget.reserve("c", 150, wait_s=0.05):
                pass  # pragma: no cover
        assert budget.total.used == 300 and budget.total.waiting == 0
    assert budget.total.used == 0 and budget.stats().nodes == 0


async def _hold(budget: IngestBudget, node: str, size: int) -> None:
    async with budget.reserve(node, size):
        pass


async def test_a_release_in_the_same_turn_as_a_waiter_is_cancelled_grants_nothing_to_it():
    # A waiter's timeout cancels its future; another reservation is released before the waiter resumes.
    # The release must not grant (or crash on) the cancelled future, and the waiter must leave holding nothing.
    budget = ByteBudget(10)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(5))
    await _settle()
    waiter.cancel()
    budget.release(10)  # raised InvalidStateError, and leaked the waiter's 5 bytes for good
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0 and budget.waiting == 0
    await asyncio.wait_for(budget.acquire(10), 1)  # the whole budget is there to take


async def test_a_cancelled_waiter_at_the_head_does_not_block_the_next_one():
    budget = ByteBudget(10)
    await budget.acquire(10)
    first = asyncio.create_task(budget.acquire(8))
    await _settle()
    second = asyncio.create_task(budget.acquire(4))
    await _settle()
    first.cancel()
    budget.release(10)
    await asyncio.wait_for(second, 1)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert budget.used == 4 and budget.waiting == 0
