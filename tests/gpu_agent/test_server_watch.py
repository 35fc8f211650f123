"""The hung-server policy, with a fake driver and a fake probe: when a server counts as
unresponsive, when it is ready again, and when it is stopped to be loaded again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from tests.fakes.drivers import FakeDriver
from tests.fakes.probes import FakeProbe
from tests.gpu_agent.test_residency import Clock, manager, spec
from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import ResidencyState
from warmpath_agent.server_watch import ServerWatch
from warmpath_agent.servicer import GpuAgentServicer
from warmpath_common.config import (
    BackendKindName,
    ConfigError,
    ServerProbeSettings,
    parse_config,
)
from warmpath_common.errors import Unavailable
from warmpath_common.grpc_server import create_server
from warmpath_router.clients import host_view

SETTINGS = ServerProbeSettings(
    period_seconds=1, timeout_seconds=1, failures_before_unresponsive=3, restart_after_seconds=10
)


class Watched:
    """A manager with model "a" ready, its probe and its watch on one fake clock."""

    def __init__(self) -> None:
        self.driver = FakeDriver()
        self.probe = FakeProbe()
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.agent: ResidencyManager = manager(
            self.driver, spec("a", 100), spec("b", 100), metrics=AgentMetrics(self.registry)
        )
        self.watch = ServerWatch(self.agent, self.probe, SETTINGS, clock=self.clock)

    async def rounds(self, count: int) -> None:
        """`count` probe rounds, one period apart."""
        for _ in range(count):
            await self.watch.probe_all()
            self.clock.now += SETTINGS.period_seconds
        await self.watch.restarts_done()

    async def hung_rounds(self, count: int) -> None:
        """From now on "a" answers no probe; then `count` probe rounds."""
        self.probe.hang("a")
        await self.rounds(count)

    async def state_of(self, model: str) -> ResidencyState:
        found = [r for r in (await self.agent.state()).models if r.model == model]
        assert found, f"{model} is not resident"
        return found[0].state

    async def events(self) -> list[str]:
        _, events = await self.agent.feed.wait_after(0, timeout=0)
        return events

    def counted(self, name: str) -> float:
        return self.registry.get_sample_value(name, {"model": "a"}) or 0.0


@pytest.fixture
async def watched() -> AsyncIterator[Watched]:
    setup = Watched()
    await setup.agent.ensure_loaded("a")
    await setup.agent.ensure_loaded("b")
    yield setup
    await setup.agent.close()


async def test_servers_that_answer_stay_ready_and_each_is_probed_every_round(
    watched: Watched,
) -> None:
    await watched.rounds(5)
    assert await watched.state_of("a") is ResidencyState.READY
    assert sorted(set(watched.probe.asked)) == ["a", "b"] and len(watched.probe.asked) == 10


async def test_failures_short_of_the_count_or_broken_by_an_answer_change_nothing(
    watched: Watched,
) -> None:
    await watched.hung_rounds(2)
    watched.probe.recover("a")
    await watched.rounds(1)
    await watched.hung_rounds(2)
    assert await watched.state_of("a") is ResidencyState.READY
    assert watched.counted("warmpath_agent_unresponsive_servers_total") == 0


async def test_failures_in_a_row_make_it_unresponsive_refused_and_said_on_the_feed(
    watched: Watched,
) -> None:
    await watched.hung_rounds(3)
    assert await watched.state_of("a") is ResidencyState.UNRESPONSIVE
    assert await watched.state_of("b") is ResidencyState.READY
    (unresponsive,) = [e for e in await watched.events() if "unresponsive" in e]
    assert unresponsive.startswith("a unresponsive: 3 readiness probes in a row failed")
    assert "(injected)" in unresponsive and "restarted if it does not answer within" in unresponsive
    assert watched.counted("warmpath_agent_unresponsive_servers_total") == 1
    # A caller is told why, rather than a second server being started beside it.
    with pytest.raises(Unavailable, match="a's server on host-a is unresponsive"):
        await watched.agent.ensure_loaded("a")
    assert watched.driver.starts == ["a", "b"]


async def test_the_routers_view_shows_it_unresponsive_with_the_agents_reason(
    watched: Watched,
) -> None:
    server = await create_server(
        "127.0.0.1:0",
        lambda grpc_server: gpu_agent_pb2_grpc.add_GpuAgentServicer_to_server(
            GpuAgentServicer(watched.agent, dict.fromkeys("ab", BackendKindName.LLAMA_CPP), 1.0),
            grpc_server,
        ),
        ["warmpath.v1.GpuAgent"],
    )
    await watched.hung_rounds(3)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            state = await gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(
                gpu_agent_pb2.GetStateRequest()
            )
    finally:
        await server.server.stop(0)
    replica = host_view(state, "h").replica("a")
    assert replica is not None and replica.state is ResidencyState.UNRESPONSIVE
    assert replica.problem.startswith("3 readiness probes in a row failed")


async def test_an_answer_before_the_grace_makes_it_ready_again_without_a_restart(
    watched: Watched,
) -> None:
    await watched.hung_rounds(5)
    watched.probe.recover("a")
    await watched.rounds(1)
    assert await watched.state_of("a") is ResidencyState.READY
    assert any(e.startswith("a answers again") for e in await watched.events())
    assert watched.driver.stops == []
    assert not (await watched.agent.ensure_loaded("a")).cold_start


async def test_still_silent_after_the_grace_it_is_stopped_failed_and_loaded_next_time(
    watched: Watched,
) -> None:
    await watched.hung_rounds(10)
    assert await watched.state_of("a") is ResidencyState.UNRESPONSIVE
    await watched.rounds(1)  # 10 s after the first failed probe
    assert watched.driver.stops == ["a"]
    state = await watched.agent.state()
    (failed,) = [r for r in state.models if r.model == "a"]
    assert failed.state is ResidencyState.FAILED and failed.running is None
    assert "no answer to its readiness probes for 10 s" in failed.failure_reason
    assert state.gpus[0].memory_used_bytes == 100 * 1024 * 1024, "only b is still booked"
    assert watched.counted("warmpath_agent_hung_server_restarts_total") == 1
    watched.probe.recover("a")
    again = await watched.agent.ensure_loaded("a")
    assert again.cold_start and again.residency.state is ResidencyState.READY
    await watched.rounds(1)
    assert await watched.state_of("a") is ResidencyState.READY


async def test_a_new_server_does_not_inherit_the_failures_of_the_one_it_replaced(
    watched: Watched,
) -> None:
    await watched.hung_rounds(2)
    await watched.agent.unload("a", force=True)
    await watched.agent.ensure_loaded("a")
    await watched.rounds(2)
    assert await watched.state_of("a") is ResidencyState.READY


async def test_an_unresponsive_server_that_dies_is_failed_like_any_crash(
    watched: Watched,
) -> None:
    await watched.hung_rounds(3)
    watched.driver.die_unseen("a")
    with pytest.raises(Unavailable):
        await watched.agent.ensure_loaded("a")
    outcome = await watched.agent.ensure_loaded("a", verify=True)
    assert outcome.cold_start and outcome.residency.state is ResidencyState.READY


@pytest.mark.parametrize(
    ("probe", "complaint"),
    [
        ({"period_seconds": 0}, "agent.server_probe.period_seconds"),
        ({"timeout_seconds": -1}, "agent.server_probe.timeout_seconds"),
        ({"failures_before_unresponsive": 0}, "agent.server_probe.failures_before_unresponsive"),
        (
            {"period_seconds": 5, "failures_before_unresponsive": 3, "restart_after_seconds": 15},
            "agent.server_probe: restart_after_seconds (15) must be longer than "
            "failures_before_unresponsive x the longer of period_seconds and timeout_seconds "
            "(15 s)",
        ),
    ],
)
def test_probe_settings_are_checked_at_start_with_the_field_path(
    probe: dict[str, float], complaint: str
) -> None:
    text = "models: []\nagent:\n  server_probe: " + str(probe).replace("'", "")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "warmpath.yaml")
    assert complaint in str(caught.value)
