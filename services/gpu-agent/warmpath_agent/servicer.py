"""GpuAgent gRPC servicer: protobuf <-> domain only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import HostState, Residency, ResidencyState
from warmpath_common.config import BackendKindName
from warmpath_common.convert import (
    RESIDENCY_STATE_TO_PROTO,
    endpoint_to_proto,
    placement_to_proto,
)
from warmpath_common.generation import Endpoint
from warmpath_common.servicer_context import ServicerContext

__all__ = ["GpuAgentServicer"]


class GpuAgentServicer(gpu_agent_pb2_grpc.GpuAgentServicer):
    def __init__(
        self,
        manager: ResidencyManager,
        backends: Mapping[str, BackendKindName],
        heartbeat_seconds: float,
    ) -> None:
        self._manager = manager
        self._backends = backends
        self._heartbeat_seconds = heartbeat_seconds

    async def GetState(
        self, request: gpu_agent_pb2.GetStateRequest, context: ServicerContext
    ) -> gpu_agent_pb2.AgentState:
        return self._state_to_proto(await self._manager.state())

    async def WatchState(
        self, request: gpu_agent_pb2.WatchStateRequest, context: ServicerContext
    ) -> AsyncIterator[gpu_agent_pb2.StateEvent]:
        feed = self._manager.feed
        version = feed.version
        yield gpu_agent_pb2.StateEvent(
            kind=gpu_agent_pb2.STATE_EVENT_KIND_SNAPSHOT,
            state=self._state_to_proto(await self._manager.state()),
        )
        while True:
            version, changes = await feed.wait_after(version, self._heartbeat_seconds)
            yield gpu_agent_pb2.StateEvent(
                kind=(
                    gpu_agent_pb2.STATE_EVENT_KIND_CHANGE
                    if changes
                    else gpu_agent_pb2.STATE_EVENT_KIND_HEARTBEAT
                ),
                state=self._state_to_proto(await self._manager.state()),
                description="; ".join(changes),
            )

    async def EnsureLoaded(
        self, request: gpu_agent_pb2.EnsureLoadedRequest, context: ServicerContext
    ) -> gpu_agent_pb2.EnsureLoadedResponse:
        # A model that does not fit yet may wait for room while the caller still would.
        outcome = await self._manager.ensure_loaded(
            request.model,
            request.warm_requests,
            request.lease_seconds,
            deadline_seconds=context.time_remaining(),
            verify=request.verify,
        )
        return gpu_agent_pb2.EnsureLoadedResponse(
            residency=self._residency_to_proto(outcome.residency),
            cold_start=outcome.cold_start,
            load_seconds=outcome.load_seconds,
            evicted=list(outcome.evicted),
            woken=outcome.woken,
        )

    async def Unload(
        self, request: gpu_agent_pb2.UnloadRequest, context: ServicerContext
    ) -> gpu_agent_pb2.UnloadResponse:
        unloaded = await self._manager.unload(
            request.model, force=request.force, sleep=request.sleep
        )
        asleep = self._manager.is_asleep(request.model)
        return gpu_agent_pb2.UnloadResponse(unloaded=unloaded, asleep=asleep)

    def _state_to_proto(self, state: HostState) -> gpu_agent_pb2.AgentState:
        return gpu_agent_pb2.AgentState(
            host=state.host,
            simulated=state.simulated,
            gpus=[
                gpu_agent_pb2.GpuState(
                    index=gpu.index,
                    uuid=gpu.uuid,
                    name=gpu.name,
                    memory_total_bytes=gpu.memory_total_bytes,
                    memory_used_bytes=gpu.memory_used_bytes,
                    memory_free_bytes=gpu.memory_free_bytes,
                    utilization_percent=gpu.utilization_percent,
                    temperature_celsius=gpu.temperature_celsius,
                    power_watts=gpu.power_watts,
                    healthy=gpu.healthy,
                    unhealthy_reason=gpu.unhealthy_reason,
                    processes=[
                        gpu_agent_pb2.GpuProcess(pid=p.pid, used_memory_bytes=p.used_memory_bytes)
                        for p in gpu.processes
                    ],
                )
                for gpu in state.gpus
            ],
            models=[self._residency_to_proto(r) for r in state.models],
            servable_models=list(state.servable_models),
            observed_at=_timestamp(state.observed_at),
        )

    def _residency_to_proto(self, residency: Residency) -> gpu_agent_pb2.ModelResidency:
        message = gpu_agent_pb2.ModelResidency(
            model=residency.model,
            state=RESIDENCY_STATE_TO_PROTO[residency.state],
            gpu_index=residency.gpu_index,
            gpu_uuid=residency.gpu_uuid,
            estimated_memory_bytes=residency.estimated_bytes,
            measured_memory_bytes=residency.measured_bytes,
            load_seconds=residency.load_seconds,
            last_used=_timestamp(residency.last_used),
            pinned=residency.pinned,
            failure_reason=residency.failure_reason,
            placement=placement_to_proto(residency.placement),
            wake_seconds=residency.wake_seconds,
            asleep_host_memory_bytes=residency.asleep_bytes,
            asleep_gpu_memory_bytes=residency.asleep_gpu_bytes,
        )
        if residency.ready_since is not None:
            message.ready_since.CopyFrom(_timestamp(residency.ready_since))
        # A sleeping server's address is not given out: only the agent talks to it.
        if residency.running is not None and residency.state is not ResidencyState.ASLEEP:
            endpoint = Endpoint(
                self._backends[residency.model],
                residency.running.base_url,
                residency.running.served_model_id,
            )
            message.endpoint.CopyFrom(endpoint_to_proto(endpoint))
        return message


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
