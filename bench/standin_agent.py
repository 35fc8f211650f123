"""A gpu-agent stand-in for benchmarks: reports fixed models as ready at given endpoints.

The router learns where a model is served only from a gpu-agent's WatchState
stream. To put the real router and backend-adapter in front of the mock
OpenAI server (which no agent driver starts), this process answers the
GpuAgent service with one simulated GPU on which every `--model NAME=URL` is
READY at URL. On a warm Generate the agent is off the hot path (the router
only touches it every few seconds for keep-alive), so the stand-in does not
change what the benchmarks measure.

    python bench/standin_agent.py --listen 127.0.0.1:50052 --host local \\
        --model mock=http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_common.grpc_server import create_server, serve_until_signalled

_GPU_UUID = "SIM-BENCH-0000"


class StandInAgent(gpu_agent_pb2_grpc.GpuAgentServicer):
    def __init__(self, host: str, models: dict[str, str], backend: int) -> None:
        self._residencies = {
            name: gpu_agent_pb2.ModelResidency(
                model=name,
                state=gpu_agent_pb2.RESIDENCY_STATE_READY,
                gpu_index=0,
                gpu_uuid=_GPU_UUID,
                endpoint=gpu_agent_pb2.BackendEndpoint(
                    kind=backend, base_url=url, served_model_id=name
                ),
                estimated_memory_bytes=1 << 30,
            )
            for name, url in models.items()
        }
        self._state = gpu_agent_pb2.AgentState(
            host=host,
            simulated=True,
            gpus=[
                gpu_agent_pb2.GpuState(
                    index=0,
                    uuid=_GPU_UUID,
                    name="Bench stand-in GPU",
                    memory_total_bytes=80 << 30,
                    healthy=True,
                )
            ],
            models=list(self._residencies.values()),
            servable_models=list(models),
        )

    async def GetState(self, request: Any, context: Any) -> gpu_agent_pb2.AgentState:
        return self._state

    async def WatchState(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield gpu_agent_pb2.StateEvent(
            kind=gpu_agent_pb2.STATE_EVENT_KIND_SNAPSHOT, state=self._state
        )
        while True:
            await asyncio.sleep(5.0)
            yield gpu_agent_pb2.StateEvent(
                kind=gpu_agent_pb2.STATE_EVENT_KIND_HEARTBEAT, state=self._state
            )

    async def EnsureLoaded(self, request: Any, context: Any) -> gpu_agent_pb2.EnsureLoadedResponse:
        return gpu_agent_pb2.EnsureLoadedResponse(
            residency=self._residencies[request.model], cold_start=False
        )


async def serve(listen: str, host: str, models: dict[str, str], backend: int) -> None:
    agent = StandInAgent(host, models, backend)
    server = await create_server(
        listen,
        lambda s: gpu_agent_pb2_grpc.add_GpuAgentServicer_to_server(agent, s),
        [gpu_agent_pb2.DESCRIPTOR.services_by_name["GpuAgent"].full_name],
    )
    await serve_until_signalled(server, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--host", default="local")
    parser.add_argument("--model", action="append", default=[], help="NAME=BASE_URL")
    parser.add_argument("--backend", type=int, default=2, help="BackendKind (2: vLLM)")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    asyncio.run(serve(args.listen, args.host, models, args.backend))


if __name__ == "__main__":
    main()
