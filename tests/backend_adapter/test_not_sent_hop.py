"""The not-sent mark across a real gRPC hop: an in-process adapter server, the router's client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import router_side_error
from warmpath.v1 import backend_adapter_pb2_grpc
from warmpath_adapter.admission import BackendAdmission
from warmpath_adapter.backends import BackendDispatcher
from warmpath_adapter.metrics import AdapterMetrics
from warmpath_adapter.openai_backend import OpenAICompatibleBackend
from warmpath_adapter.servicer import BackendAdapterServicer
from warmpath_cli.mesh import free_port
from warmpath_common.config import BackendKindName
from warmpath_common.errors import ResourceExhausted, Unavailable
from warmpath_common.grpc_server import ServiceServer, create_server


async def start_adapter(admission: BackendAdmission) -> ServiceServer:
    dispatcher = BackendDispatcher(
        {BackendKindName.VLLM: OpenAICompatibleBackend(httpx.AsyncClient(), 5)},
        AdapterMetrics(CollectorRegistry()),
        admission,
    )
    return await create_server(
        "127.0.0.1:0",
        lambda server: backend_adapter_pb2_grpc.add_BackendAdapterServicer_to_server(
            BackendAdapterServicer(dispatcher), server
        ),
        ["warmpath.v1.BackendAdapter"],
    )


@pytest.fixture
async def adapter() -> AsyncIterator[ServiceServer]:
    # No request may run and none may wait: every one is refused at admission.
    server = await start_adapter(BackendAdmission(max_running=0, max_waiting=0))
    yield server
    await server.server.stop(0)


async def test_an_admission_refusal_arrives_at_the_router_marked_not_sent(
    adapter: ServiceServer,
) -> None:
    error = await router_side_error(
        f"127.0.0.1:{adapter.port}", f"http://127.0.0.1:{free_port()}", "m"
    )
    assert isinstance(error, ResourceExhausted) and error.not_sent, error.message


async def test_a_draining_adapters_refusal_arrives_marked_not_sent(adapter: ServiceServer) -> None:
    adapter.drain.draining = True
    error = await router_side_error(
        f"127.0.0.1:{adapter.port}", f"http://127.0.0.1:{free_port()}", "m"
    )
    assert isinstance(error, Unavailable) and error.not_sent
    assert "shutting down" in error.message
