"""gRPC clients for the gpu-agents and backend-adapters.

The one place where a peer's status becomes a WarmpathError again, and where
each agent's WatchState stream feeds the cluster view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator

import grpc

from warmpath.v1 import (
    backend_adapter_pb2,
    backend_adapter_pb2_grpc,
    gpu_agent_pb2,
    gpu_agent_pb2_grpc,
)
from warmpath_common.config import HostSpec
from warmpath_common.convert import (
    RESIDENCY_STATE_FROM_PROTO,
    ResidencyState,
    endpoint_from_proto,
    endpoint_to_proto,
    event_from_proto,
    placement_from_proto,
    request_to_proto,
)
from warmpath_common.errors import (
    BACKEND_DOWN_METADATA_KEY,
    NOT_SENT_METADATA_KEY,
    PEER_ANSWERED_METADATA_KEY,
    ModelNotFound,
    PeerLost,
    Unavailable,
    error_for_status,
)
from warmpath_common.generation import AdapterEvent, Completion, Endpoint, GenerationRequest
from warmpath_common.liveness import KeepaliveSettings, channel_options
from warmpath_common.telemetry import client_call_span
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.ports import LoadResult

__all__ = [
    "AdapterClient",
    "AgentClient",
    "HostChannels",
    "host_view",
    "translate_rpc_errors",
    "watch_cluster",
]

logger = logging.getLogger(__name__)

_ENSURE_LOADED = "/warmpath.v1.GpuAgent/EnsureLoaded"
_ADAPTER_GENERATE = "/warmpath.v1.BackendAdapter/Generate"

_RECONNECT_MIN_SECONDS = 0.5
_RECONNECT_MAX_SECONDS = 10.0

# How grpc's client channel fails a call whose load-balancing pick found no connected
# address (every connect attempt, TLS handshake included, failed) or whose target did
# not resolve. Such a call was never bound to a connection, so the peer cannot have
# seen it. grpc exposes no structured flag for this, and neither initial metadata
# (empty also when a peer dies mid-call) nor the channel's state afterwards (a peer
# that died mid-call leaves it failing too) can tell the two apart; these messages
# have been stable in grpc core for years. If one changed, such failures would just
# count as possibly sent: a lost retry, never a duplicated request.
_NEVER_CONNECTED = (
    "failed to connect to all addresses",
    "errors resolving ",
    "DNS resolution failed",
)


def _marked(error: grpc.aio.AioRpcError, key: str) -> bool:
    trailing = error.trailing_metadata()
    return trailing is not None and trailing.get(key) == "true"


def _not_sent(error: grpc.aio.AioRpcError) -> bool:
    """True when the call provably never reached a model server: the peer said so
    (see warmpath_common.errors), or the peer itself was never reached."""
    if _marked(error, NOT_SENT_METADATA_KEY):
        return True
    details = error.details() or ""
    return error.code() is grpc.StatusCode.UNAVAILABLE and details.startswith(_NEVER_CONNECTED)


@contextlib.contextmanager
def translate_rpc_errors(peer: str) -> Iterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as error:
        code = error.code()
        details = error.details() or code.name
        if code is grpc.StatusCode.UNAVAILABLE and not _marked(error, PEER_ANSWERED_METADATA_KEY):
            # The peer itself was not reached; one that answered said what failed.
            raise PeerLost(
                f"{peer} is unavailable: {details}",
                not_sent=_not_sent(error),
                backend_down=_marked(error, BACKEND_DOWN_METADATA_KEY),
            ) from error
        raise error_for_status(
            code,
            details,
            not_sent=_not_sent(error),
            backend_down=_marked(error, BACKEND_DOWN_METADATA_KEY),
        ) from error


def host_view(state: gpu_agent_pb2.AgentState, name: str) -> HostView:
    return HostView(
        name=name,
        reachable=True,
        simulated=state.simulated,
        servable=frozenset(state.servable_models),
        largest_gpu_bytes=max(
            (gpu.memory_total_bytes for gpu in state.gpus if gpu.healthy), default=0
        ),
        total_gpu_bytes=sum(gpu.memory_total_bytes for gpu in state.gpus if gpu.healthy),
        gpu_count=sum(gpu.healthy for gpu in state.gpus),
        replicas=tuple(
            Replica(
                model=m.model,
                host=name,
                state=RESIDENCY_STATE_FROM_PROTO.get(m.state, ResidencyState.FAILED),
                gpu_index=m.gpu_index,
                gpu_uuid=m.gpu_uuid,
                load_seconds=m.load_seconds,
                endpoint=endpoint_from_proto(m.endpoint) if m.HasField("endpoint") else None,
                problem=m.failure_reason,
                placement=placement_from_proto(m.placement),
                wake_seconds=m.wake_seconds,
            )
            for m in state.models
        ),
    )


class HostChannels:
    """One channel per agent and per adapter, reused for every call."""

    def __init__(
        self,
        hosts: tuple[HostSpec, ...],
        credentials: grpc.ChannelCredentials | None = None,
        keepalive: KeepaliveSettings | None = None,
    ) -> None:
        self.specs = {host.name: host for host in hosts}
        # Keepalive finds a stopped peer or a silent link in seconds, calls or not.
        options = channel_options(keepalive or KeepaliveSettings())

        def open_channel(address: str) -> grpc.aio.Channel:
            if credentials is None:
                return grpc.aio.insecure_channel(address, options=options)
            return grpc.aio.secure_channel(address, credentials, options=options)

        self._agent_channels = {h.name: open_channel(h.agent) for h in hosts}
        self._adapter_channels = {
            h.name: open_channel(h.adapter) for h in hosts if not h.adapter_in_process
        }
        self.agents = {
            name: gpu_agent_pb2_grpc.GpuAgentStub(channel)
            for name, channel in self._agent_channels.items()
        }
        self.adapters = {
            name: backend_adapter_pb2_grpc.BackendAdapterStub(channel)
            for name, channel in self._adapter_channels.items()
        }

    async def close(self) -> None:
        for channel in (*self._agent_channels.values(), *self._adapter_channels.values()):
            await channel.close()


class AgentClient:
    def __init__(self, channels: HostChannels) -> None:
        self._channels = channels

    async def ensure_loaded(
        self,
        host: str,
        model: str,
        timeout_seconds: float,
        warm_requests: int = 0,
        lease_seconds: float = 0.0,
        verify: bool = False,
    ) -> LoadResult:
        with (
            client_call_span(_ENSURE_LOADED) as metadata,
            translate_rpc_errors(f"gpu-agent {host}"),
        ):
            response = await self._channels.agents[host].EnsureLoaded(
                gpu_agent_pb2.EnsureLoadedRequest(
                    model=model,
                    warm_requests=warm_requests,
                    lease_seconds=lease_seconds,
                    verify=verify,
                ),
                timeout=timeout_seconds,
                metadata=metadata,
            )
        residency = response.residency
        if not residency.HasField("endpoint"):
            raise Unavailable(f"gpu-agent {host} reported {model} loaded but gave no endpoint")
        return LoadResult(
            endpoint=endpoint_from_proto(residency.endpoint),
            gpu_index=residency.gpu_index,
            gpu_uuid=residency.gpu_uuid,
            cold_start=response.cold_start,
            load_seconds=response.load_seconds,
            placement=placement_from_proto(residency.placement),
            woken=response.woken,
        )

    async def state(self, host: str, timeout_seconds: float) -> gpu_agent_pb2.AgentState:
        with translate_rpc_errors(f"gpu-agent {host}"):
            state: gpu_agent_pb2.AgentState = await self._channels.agents[host].GetState(
                gpu_agent_pb2.GetStateRequest(), timeout=timeout_seconds
            )
        return state


class AdapterClient:
    def __init__(self, channels: HostChannels) -> None:
        self._channels = channels

    async def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncGenerator[AdapterEvent, None]:
        stub = self._channels.adapters.get(host)
        if stub is None:
            raise ModelNotFound(f"no backend-adapter configured for host {host!r}")
        completion: Completion | None = None
        with client_call_span(_ADAPTER_GENERATE) as metadata:
            call = stub.Generate(
                backend_adapter_pb2.BackendGenerateRequest(
                    request=request_to_proto(request),
                    endpoint=endpoint_to_proto(endpoint),
                ),
                timeout=timeout_seconds,
                metadata=metadata,
            )
            try:
                with translate_rpc_errors(f"backend-adapter {host}"):
                    async for message in call:
                        event = event_from_proto(message)
                        if isinstance(event, Completion):
                            # Read on to the end of the stream before handing the
                            # completion over, so the call ends with its OK status
                            # (and its trace span ends) rather than being cut off.
                            completion = event
                            continue
                        yield event
            finally:
                # The caller went away or failed: stop the backend generating too.
                call.cancel()
        if completion is not None:
            yield completion


async def watch_cluster(
    channels: HostChannels,
    cluster: ClusterView,
    stop: asyncio.Event,
    heartbeat_timeout_seconds: float = 15.0,
) -> None:
    """Keeps `cluster` current from every agent's WatchState until `stop` is set.

    A host whose agent sends nothing (no change, no heartbeat) for
    `heartbeat_timeout_seconds` is marked unreachable, and its stream opened again.
    """
    watchers = [
        asyncio.create_task(
            _watch_host(name, stub, cluster, stop, heartbeat_timeout_seconds), name=f"watch {name}"
        )
        for name, stub in channels.agents.items()
    ]
    try:
        await stop.wait()
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def _watch_host(
    name: str,
    stub: gpu_agent_pb2_grpc.GpuAgentStub,
    cluster: ClusterView,
    stop: asyncio.Event,
    heartbeat_timeout_seconds: float,
) -> None:
    backoff = _RECONNECT_MIN_SECONDS
    while not stop.is_set():
        problem = "state stream ended"
        call = stub.WatchState(gpu_agent_pb2.WatchStateRequest())
        events = aiter(call)
        try:
            while True:
                # A stopped agent or a silent link keeps the stream open and quiet:
                # only the missing heartbeats tell.
                async with asyncio.timeout(heartbeat_timeout_seconds):
                    event = await anext(events)
                if not cluster.hosts.get(name, HostView(name, False)).reachable:
                    logger.info("gpu-agent %s connected", name)
                cluster.update(host_view(event.state, name))
                backoff = _RECONNECT_MIN_SECONDS
        except StopAsyncIteration:
            pass
        except TimeoutError:
            problem = (
                f"no heartbeat from its gpu-agent for {heartbeat_timeout_seconds:g} s "
                "(router.heartbeat_timeout_seconds)"
            )
        except grpc.aio.AioRpcError as error:
            problem = f"{error.code().name}: {error.details()}"
        finally:
            call.cancel()
        if cluster.hosts.get(name, HostView(name, False)).reachable:
            logger.warning("lost gpu-agent %s: %s", name, problem)
        cluster.mark_unreachable(name, problem)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _RECONNECT_MAX_SECONDS)
