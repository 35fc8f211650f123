"""Hosts that stop answering without failing: processes stopped with SIGSTOP (alive,
connections open, nothing answers) and a link that silently drops every packet.

With a second healthy host every request is answered and at most the first after
the fault waits out the first-token timeout; with no healthy host requests end
UNAVAILABLE naming the hung hosts, long before their deadline; after recovery the
host serves again. Run with -s for the figures (time to detect, requests that
waited past the timeout, duplicated work).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.conftest import eventually, metric_total
from tests.integration.hosts import (
    FIRST_TOKEN,
    Answer,
    Hosts,
    ask,
    namespaced_hosts,
    namespaces_unavailable,
    start_hosts,
    unreachable_in_route,
)
from warmpath.v1 import generate_pb2, router_pb2_grpc
from warmpath_cli.mesh import LocalMesh
from warmpath_common.liveness import FirstTokenTimeout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LONG_DEADLINE = 120.0
AFTER_FAULT = 6
TIMEOUTS = "warmpath_router_first_token_timeouts_total"
ABANDONED = "warmpath_router_abandoned_try_seconds_total"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    hosts = start_hosts(tmp_path_factory.mktemp("pair"), {"h1": "127.0.0.1", "h2": "127.0.0.1"})
    try:
        yield hosts
    finally:
        hosts.stop()


async def warm_up(stub: router_pb2_grpc.RouterStub) -> None:
    """Enough answers for the router to have measured the model's time to first token."""
    for _ in range(int(FIRST_TOKEN["min_samples"]) + 2):
        await ask(stub)


async def served_through_fault(
    mesh: Hosts, stub: router_pb2_grpc.RouterStub, label: str, healthy: str
) -> list[Answer]:
    """AFTER_FAULT sequential requests just after a fault on the other host: all answered,
    only the first may have waited out a first-token timeout."""
    timeouts_before, abandoned_before = mesh.metric(TIMEOUTS), mesh.metric(ABANDONED)
    answers = [await ask(stub, LONG_DEADLINE) for _ in range(AFTER_FAULT)]
    timed_out = mesh.metric(TIMEOUTS) - timeouts_before
    waited = [a for a in answers if a.seconds > FIRST_TOKEN["floor_seconds"]]
    print(
        f"\n[{label}] detected after {answers[0].seconds:.1f} s (first request's answer); "
        f"requests past the first-token timeout: {len(waited)} of {len(answers)}; "
        f"tries cancelled for silence: {timed_out:g}; duplicated work: "
        f"{mesh.metric(ABANDONED) - abandoned_before:.1f} s of model-server time; "
        f"answer times: {', '.join(f'{a.seconds:.1f}' for a in answers)} s"
    )
    assert all(a.host == healthy for a in answers[1:]), answers
    assert timed_out <= 1, "only the first request after the fault met the hung host"
    return answers


async def refused_without_healthy_host(
    stub: router_pb2_grpc.RouterStub, label: str, hung: list[str]
) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ask(stub, LONG_DEADLINE)
    seconds = time.monotonic() - started
    print(f"[{label}] no healthy host: {caught.value.code().name} after {seconds:.1f} s")
    print(f"[{label}]   {caught.value.details()}")
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value.details()
    for host in hung:
        assert host in (caught.value.details() or ""), "the caller hears which host hangs"


async def serves_again(stub: router_pb2_grpc.RouterStub, host: str, label: str) -> None:
    started = time.monotonic()
    served: list[str] = []

    async def answered_by_host() -> bool:
        try:
            with_deadline = await ask(stub, LONG_DEADLINE)
        except grpc.aio.AioRpcError as error:
            # Until its agent's probes see the thawed server answer again, the mesh
            # may still refuse: both hosts were hung a moment ago.
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
            return False
        served.append(with_deadline.host)
        return with_deadline.host == host

    await eventually(answered_by_host, timeout=150, interval=1.0)
    print(f"[{label}] {host} served again {time.monotonic() - started:.1f} s after recovery")


@pytest.mark.parametrize(
    ("label", "adapter_too"), [("SIGSTOP adapter+server", True), ("SIGSTOP server", False)]
)
async def test_a_stopped_host(pair: Hosts, label: str, adapter_too: bool) -> None:
    """(a) a host's adapter and model server stopped; (b) its model server alone."""
    h1, h2 = pair.hosts["h1"], pair.hosts["h2"]
    async with grpc.aio.insecure_channel(pair.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        await warm_up(stub)
        try:
            h1.freeze(adapter=adapter_too, model_server=True)
            await served_through_fault(pair, stub, label, "h2")
            h2.freeze(adapter=adapter_too, model_server=True)
            await refused_without_healthy_host(stub, label, ["h1", "h2"])
        finally:
            h1.thaw()
            h2.thaw()
        await serves_again(stub, "h1", label)


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hosts, dict]]:
    why_not = namespaces_unavailable()
    if why_not:
        pytest.skip(f"no network partition test: {why_not}")
    with namespaced_hosts(["h1", "h2"]) as spaces:
        hosts = start_hosts(
            tmp_path_factory.mktemp("partition"),
            {name: space.address for name, space in spaces.items()},
            {name: space.wrap for name, space in spaces.items()},
        )
        try:
            yield hosts, spaces
        finally:
            hosts.stop()


async def test_a_link_that_drops_every_packet(partitioned: tuple[Hosts, dict]) -> None:
    mesh, spaces = partitioned
    async with grpc.aio.insecure_channel(mesh.address) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        await warm_up(stub)
        try:
            # Mid-traffic: the cut falls between two requests of a running sequence,
            # its connections to h1 open and in use a moment before.
            cut_at = time.monotonic()
            spaces["h1"].cut()
            await served_through_fault(mesh, stub, "partition", "h2")
            await eventually(lambda: _said_unreachable(stub, "h1"), timeout=30, interval=0.2)
            print(
                f"[partition] Route calls h1 unreachable {time.monotonic() - cut_at:.1f} s "
                f"after the cut: {await unreachable_in_route(stub, 'h1')}"
            )
            spaces["h2"].cut()
            await refused_without_healthy_host(stub, "partition", ["h2"])
        finally:
            for space in spaces.values():
                space.restore()
        await serves_again(stub, "h1", "partition")


async def _said_unreachable(stub: router_pb2_grpc.RouterStub, host: str) -> bool:
    return bool(await unreachable_in_route(stub, host))


async def test_requests_waiting_their_turn_at_one_llama_cpp_server_are_not_silence(
    mesh: LocalMesh, router_channel: grpc.aio.Channel
) -> None:
    """As in the soak: concurrent clients on one llama.cpp server, which serves one
    request at a time, so most wait several answers' time for their first token."""
    stub = router_pb2_grpc.RouterStub(router_channel)
    for _ in range(6):  # enough measurements for the timeout to adapt (min_samples 5)
        await ask(stub)
    assert mesh.ports.metrics is not None
    port = mesh.ports.metrics["router"]
    before = metric_total(port, TIMEOUTS)

    async def client() -> list[float]:
        firsts = []
        for _ in range(3):
            started = time.monotonic()
            call = stub.Generate(
                generate_pb2.GenerateRequest(model="gemma", prompt="Tell a story:", max_tokens=48),
                timeout=LONG_DEADLINE,
            )
            async for _chunk in call:
                firsts.append(time.monotonic() - started)
                break
            async for _chunk in call:
                pass
        return firsts

    firsts = [t for times in await asyncio.gather(*(client() for _ in range(4))) for t in times]
    print(
        f"\n[one server, 4 clients] slowest first token {max(firsts):.1f} s (the first-token "
        f"timeout: {FirstTokenTimeout().floor_seconds:g} s floor, default settings); "
        "tries cancelled for silence: "
        f"{metric_total(port, TIMEOUTS) - before:g}"
    )
    assert metric_total(port, TIMEOUTS) == before, "waiting its turn is not silence"
