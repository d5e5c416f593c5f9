"""The shared rate limiter and pauses (worker/prices/ratelimit.py's SourceGate and its
statements) against real PostgreSQL: slots spaced across callers, pauses every worker sees."""

import asyncio

import pytest

from worker.prices import ratelimit
from worker.prices.base import SourcePaused
from worker.prices.ratelimit import Rate, SourceGate, resume
from worker.sql import prices as sql


async def test_reserve_request_spaces_slots_across_callers(shared_pool) -> None:
    """Three callers reserve slots of a 60 s spacing; the third is refused at a 100 s limit."""
    waits = [
        await shared_pool.fetchval(sql.RESERVE_REQUEST, "polygon", 60.0, 100.0) for _ in range(3)
    ]
    assert waits[0] == 0.0
    assert 59.0 < waits[1] <= 60.0
    assert waits[2] is None
    state = await shared_pool.fetchrow(sql.SOURCE_STATE, "polygon")
    assert 119.0 < state["wait_s"] <= 120.0 and state["paused_s"] == 0.0


async def test_concurrent_reservations_never_share_a_slot(shared_pool) -> None:
    waits = await asyncio.gather(
        *(shared_pool.fetchval(sql.RESERVE_REQUEST, "yahoo", 1.0, 1000.0) for _ in range(8))
    )
    slots = sorted(round(w) for w in waits)
    assert slots == list(range(8))


async def test_pause_keeps_the_longest_and_resume_ends_it(shared_pool) -> None:
    gate = SourceGate(shared_pool, {}, max_wait_s=30.0)
    await gate.pause("yahoo", 600.0, "yahoo: rate limited (long)")
    shorter = await gate.pause("yahoo", 60.0, "yahoo: rate limited (short)")
    assert shorter.delay_s > 590 and shorter.reason == "yahoo: rate limited (long)"
    assert set(await gate.paused(["yahoo", "polygon"])) == {"yahoo"}
    assert await resume(shared_pool, "yahoo") is True
    assert await gate.paused(["yahoo"]) == {}
    assert await resume(shared_pool, "yahoo") is False


async def test_acquire_refuses_a_paused_source_even_without_a_rate_limit(shared_pool) -> None:
    gate = SourceGate(shared_pool, {"yahoo": None}, max_wait_s=30.0)
    await gate.acquire("yahoo")  # not paused: nothing to wait for
    await gate.pause("yahoo", 300.0, "yahoo: rate limited")
    with pytest.raises(SourcePaused) as caught:
        await gate.acquire("yahoo")
    assert caught.value.delay_s > 290 and caught.value.reason == "yahoo: rate limited"


async def test_acquire_checks_the_pause_again_after_waiting_for_its_slot(
    shared_pool, monkeypatch
) -> None:
    gate = SourceGate(shared_pool, {"polygon": Rate(5, "minute")}, max_wait_s=30.0)
    await gate.acquire("polygon")  # the first slot: no wait

    async def another_process_pauses_it_meanwhile(seconds: float) -> None:
        assert 11 < seconds <= 12
        await gate.pause("polygon", 60.0, "polygon: rate limited")

    monkeypatch.setattr(ratelimit, "_sleep", another_process_pauses_it_meanwhile)
    with pytest.raises(SourcePaused) as caught:
        await gate.acquire("polygon")
    assert caught.value.reason == "polygon: rate limited"
