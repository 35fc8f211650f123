"""Graceful shutdown: SIGTERM flips health, refuses new calls, lets streams finish, exits 0."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.conftest import standard_mesh
from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc

pytestmark = pytest.mark.integration


def test_sigterm_lets_the_stream_in_flight_finish(tmp_path: Path) -> None:
    mesh = standard_mesh(tmp_path)
    mesh.start()
    try:
        router = mesh.ports.address("router")
        with grpc.insecure_channel(router) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            list(
                stub.Generate(
                    generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=1)
                )
            )
            stream = stub.Generate(
                generate_pb2.GenerateRequest(
                    model="gemma", prompt="Once upon a time", max_tokens=60
                ),
                timeout=60,
            )
            first = next(stream)
            assert first.text is not None
            mesh.processes["router"].send_signal(signal.SIGTERM)

            # Meanwhile health says NOT_SERVING, and a new call is refused with
            # UNAVAILABLE (retry elsewhere) rather than served or cancelled.
            with grpc.insecure_channel(router) as fresh:
                status = (
                    health_pb2_grpc.HealthStub(fresh)
                    .Check(health_pb2.HealthCheckRequest(), timeout=5)
                    .status
                )
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING
                for call in (
                    lambda: router_pb2_grpc.RouterStub(fresh).ListModels(
                        router_pb2.ListModelsRequest(), timeout=5
                    ),
                    lambda: list(
                        router_pb2_grpc.RouterStub(fresh).Generate(
                            generate_pb2.GenerateRequest(model="gemma", prompt="Hi"), timeout=5
                        )
                    ),
                ):
                    with pytest.raises(grpc.RpcError) as refused:
                        call()
                    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
                    assert "shutting down" in (refused.value.details() or "")  # type: ignore[attr-defined]

            rest = list(stream)
        final = rest[-1]
        assert final.finish_reason == generate_pb2.FINISH_REASON_LENGTH
        assert final.usage.output_tokens == 60, "the stream in flight was not cut"
        assert mesh.processes["router"].wait(30) == 0
    finally:
        codes = mesh.stop()
    assert codes.get("backend-adapter") == 0 and codes.get("gpu-agent") == 0
