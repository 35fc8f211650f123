from __future__ import annotations

import asyncio

import pytest

from warmpath_adapter.admission import BackendAdmission
from warmpath_common.errors import ResourceExhausted


async def test_runs_up_to_the_limit_queues_a_few_and_refuses_the_rest_at_once() -> None:
    admission = BackendAdmission(max_running=2, max_waiting=1)
    release = asyncio.Event()
    started: list[int] = []

    async def request(number: int) -> None:
        async with admission.admit("b"):
            started.append(number)
            await release.wait()

    running = [asyncio.create_task(request(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert started == [0, 1] and admission.load("b") == (2, 1)
    with pytest.raises(ResourceExhausted, match="at capacity") as refused:
        async with admission.admit("b"):
            pass
    assert refused.value.not_sent, "the model server never saw it: another replica may run it"
    async with asyncio.timeout(1):
        async with admission.admit("other backend"):
            pass  # limits are per backend
    release.set()
    await asyncio.gather(*running)
    assert started == [0, 1, 2] and admission.load("b") == (0, 0)


async def test_a_caller_leaving_the_queue_gives_its_place_up() -> None:
    admission = BackendAdmission(max_running=1, max_waiting=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.admit("b"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    assert admission.load("b") == (1, 1)
    waiter.cancel()
    await asyncio.sleep(0.01)
    assert admission.load("b") == (1, 0)
    release.set()
    await holder
