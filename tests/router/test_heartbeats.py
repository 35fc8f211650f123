"""A host whose agent stops sending heartbeats (stopped, or behind a silent link) is
marked unreachable within router.heartbeat_timeout_seconds, and comes back when it
speaks again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tests.conftest import eventually
from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_common.config import HostSpec
from warmpath_common.grpc_server import create_server
from warmpath_common.servicer_context import ServicerContext
from warmpath_router.clients import HostChannels, watch_cluster
from warmpath_router.cluster import ClusterView


class QuietAgent(gpu_agent_pb2_grpc.GpuAgentServicer):
    """Sends its state once, then nothing, until `speak` is set: a hung agent."""

    def __init__(self) -> None:
        self.speak = asyncio.Event()

    async def WatchState(
        self, request: gpu_agent_pb2.WatchStateRequest, context: ServicerContext
    ) -> AsyncIterator[gpu_agent_pb2.StateEvent]:
        state = gpu_agent_pb2.AgentState(host="h1", servable_models=["m"])
        yield gpu_agent_pb2.StateEvent(kind=gpu_agent_pb2.STATE_EVENT_KIND_SNAPSHOT, state=state)
        while True:
            await self.speak.wait()
            yield gpu_agent_pb2.StateEvent(
                kind=gpu_agent_pb2.STATE_EVENT_KIND_HEARTBEAT, state=state
            )
            await asyncio.sleep(0.05)


async def test_a_silent_agent_is_marked_unreachable_and_said_so_then_comes_back() -> None:
    agent = QuietAgent()
    server = await create_server(
        "127.0.0.1:0",
        lambda s: gpu_agent_pb2_grpc.add_GpuAgentServicer_to_server(agent, s),
        ["warmpath.v1.GpuAgent"],
    )
    channels = HostChannels(
        (HostSpec(name="h1", agent=f"127.0.0.1:{server.port}", adapter="127.0.0.1:1"),)
    )
    cluster = ClusterView.of(["h1"])
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_cluster(channels, cluster, stop, 0.5))
    try:
        await eventually(lambda: _reachable(cluster, True))
        await eventually(lambda: _reachable(cluster, False))
        assert "no heartbeat from its gpu-agent for 0.5 s" in cluster.hosts["h1"].problem
        agent.speak.set()
        await eventually(lambda: _reachable(cluster, True), timeout=20)
    finally:
        stop.set()
        await watcher
        await channels.close()
        await server.server.stop(0)


async def _reachable(cluster: ClusterView, expected: bool) -> bool:
    return cluster.hosts["h1"].reachable is expected


class ChattyAgent(gpu_agent_pb2_grpc.GpuAgentServicer):
    """Sends heartbeats back to back, so a stop often lands as one arrives."""

    async def WatchState(
        self, request: gpu_agent_pb2.WatchStateRequest, context: ServicerContext
    ) -> AsyncIterator[gpu_agent_pb2.StateEvent]:
        state = gpu_agent_pb2.AgentState(host="h1", servable_models=["m"])
        while True:
            yield gpu_agent_pb2.StateEvent(
                kind=gpu_agent_pb2.STATE_EVENT_KIND_HEARTBEAT, state=state
            )


async def test_the_watch_stops_when_asked_even_while_heartbeats_arrive() -> None:
    # With asyncio.wait_for on Python 3.11, a cancel that met an arriving event was lost
    # and the watch went on reading for ever (a CI run hung here for 300 s).
    server = await create_server(
        "127.0.0.1:0",
        lambda s: gpu_agent_pb2_grpc.add_GpuAgentServicer_to_server(ChattyAgent(), s),
        ["warmpath.v1.GpuAgent"],
    )
    channels = HostChannels(
        (HostSpec(name="h1", agent=f"127.0.0.1:{server.port}", adapter="127.0.0.1:1"),)
    )
    try:
        for _ in range(20):
            cluster = ClusterView.of(["h1"])
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch_cluster(channels, cluster, stop, 5.0))
            await eventually(lambda cluster=cluster: _reachable(cluster, True))
            stop.set()
            async with asyncio.timeout(5):
                await watcher
    finally:
        await channels.close()
        await server.server.stop(0)
