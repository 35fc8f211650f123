"""One trace per request across the three real services, exported over OTLP/gRPC to a
real receiver; prompt text recorded nowhere unless the operator opts in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.integration.conftest import dead_collector_env, standard_mesh
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan
from warmpath.v1 import (
    backend_adapter_pb2,
    backend_adapter_pb2_grpc,
    generate_pb2,
    gpu_agent_pb2,
    gpu_agent_pb2_grpc,
    router_pb2_grpc,
)
from warmpath_cli.mesh import LocalMesh, free_port, wait_serving

pytestmark = pytest.mark.integration

CANARY = "canary-5d41402abc4b2a76"
SERVER, CLIENT = 2, 3  # OTLP span kinds
STATUS_ERROR = 2


def otel_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "always_on",
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def traced_mesh(
    receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalMesh]:
    mesh = standard_mesh(tmp_path_factory.mktemp("traced"), otel_env(receiver))
    mesh.start()
    yield mesh
    mesh.stop()


def generate(
    mesh: LocalMesh,
    request: generate_pb2.GenerateRequest,
    metadata: tuple[tuple[str, str], ...] = (),
) -> generate_pb2.GenerateResponse:
    with grpc.insecure_channel(mesh.ports.address("router")) as channel:
        chunks = list(
            router_pb2_grpc.RouterStub(channel).Generate(request, timeout=120, metadata=metadata)
        )
    return chunks[-1]


def one(
    spans: list[ReceivedSpan], service: str, name: str, kind: int | None = None
) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.service == service and s.name == name and (kind is None or s.kind == kind)
    ]
    assert len(found) == 1, f"{service} {name}: {[(s.service, s.name, s.kind) for s in spans]}"
    return found[0]


def complete(spans: list[ReceivedSpan]) -> bool:
    names = {(s.service, s.name) for s in spans}
    return {
        ("warmpath-router", "/warmpath.v1.Router/Generate"),
        ("warmpath-router", "/warmpath.v1.BackendAdapter/Generate"),
        ("warmpath-backend-adapter", "/warmpath.v1.BackendAdapter/Generate"),
        ("warmpath-backend-adapter", "text_completion gemma3-270m"),
    } <= names


def test_one_trace_links_router_agent_adapter_and_model(
    traced_mesh: LocalMesh, receiver: OtlpReceiver
) -> None:
    final = generate(
        traced_mesh,
        generate_pb2.GenerateRequest(model="gemma", prompt=f"{CANARY} The sky is", max_tokens=6),
    )
    trace_id = final.route.trace_id
    assert len(trace_id) == 32 and final.route.cold_start
    spans = receiver.wait_for(
        lambda s: complete(s) and any(x.name == "ensure_loaded gemma3-270m" for x in s), trace_id
    )
    assert {s.service for s in spans} == {
        "warmpath-router",
        "warmpath-gpu-agent",
        "warmpath-backend-adapter",
    }

    router = one(spans, "warmpath-router", "/warmpath.v1.Router/Generate", SERVER)
    route = one(spans, "warmpath-router", "route gemma3-270m")
    loading = one(spans, "warmpath-router", "load gemma3-270m")
    agent_call = one(spans, "warmpath-router", "/warmpath.v1.GpuAgent/EnsureLoaded", CLIENT)
    agent = one(spans, "warmpath-gpu-agent", "/warmpath.v1.GpuAgent/EnsureLoaded", SERVER)
    load = one(spans, "warmpath-gpu-agent", "ensure_loaded gemma3-270m")
    adapter_call = one(spans, "warmpath-router", "/warmpath.v1.BackendAdapter/Generate", CLIENT)
    adapter = one(spans, "warmpath-backend-adapter", "/warmpath.v1.BackendAdapter/Generate", SERVER)
    model_call = one(spans, "warmpath-backend-adapter", "text_completion gemma3-270m", CLIENT)

    assert route.parent_span_id == router.span_id
    assert loading.parent_span_id == router.span_id
    assert agent_call.parent_span_id == loading.span_id
    assert agent.parent_span_id == agent_call.span_id
    assert load.parent_span_id == agent.span_id
    assert adapter_call.parent_span_id == router.span_id
    assert adapter.parent_span_id == adapter_call.span_id
    assert model_call.parent_span_id == adapter.span_id

    assert router.attributes["gen_ai.operation.name"] == "text_completion"
    assert router.attributes["gen_ai.request.model"] == "gemma"
    assert router.attributes["gen_ai.request.max_tokens"] == 6
    assert router.attributes["gen_ai.response.model"] == "gemma3-270m"
    assert router.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert router.attributes["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert route.attributes["warmpath.route.reason"] == "load_required"
    assert route.attributes["warmpath.alias"] == "gemma"
    assert route.attributes["warmpath.route.candidates"] == ["local score=2"]
    # A cold load is placed by the agent: the Generate span says where, with its names.
    assert router.attributes["warmpath.gpu.indexes"] == load.attributes["warmpath.gpu.indexes"]
    assert router.attributes["warmpath.placement.layout"] == "single"
    assert router.attributes["warmpath.gpu.uuids"] == [final.route.gpu_uuid]
    assert loading.attributes["warmpath.cold_start"] is True
    assert load.attributes["warmpath.cold_start"] is True
    assert load.attributes["warmpath.gpu.uuid"].startswith("SIM-")
    assert (
        load.attributes["warmpath.memory.free_before_bytes"]
        > load.attributes["warmpath.memory.free_after_bytes"]
    )
    assert load.attributes["warmpath.load_seconds"] > 0
    assert model_call.attributes["gen_ai.provider.name"] == "llama_cpp"
    assert model_call.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert model_call.attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert model_call.attributes["warmpath.time_to_first_token_seconds"] > 0
    assert model_call.attributes["http.response.status_code"] == 200


def test_a_callers_trace_continues_through_the_mesh(
    traced_mesh: LocalMesh, receiver: OtlpReceiver
) -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    final = generate(
        traced_mesh,
        generate_pb2.GenerateRequest(model="gemma3-270m", prompt="Hello", max_tokens=2),
        metadata=(("traceparent", f"00-{caller_trace}-{caller_span}-01"),),
    )
    assert final.route.trace_id == caller_trace
    spans = receiver.wait_for(complete, caller_trace)
    assert (
        one(spans, "warmpath-router", "/warmpath.v1.Router/Generate", SERVER).parent_span_id
        == caller_span
    )


def test_a_fallback_is_one_trace_that_shows_the_failed_hop(
    traced_mesh: LocalMesh, receiver: OtlpReceiver
) -> None:
    final = generate(
        traced_mesh,
        generate_pb2.GenerateRequest(model="broken-model", prompt=f"{CANARY} Hi", max_tokens=2),
    )
    assert final.route.served_model == "gemma3-270m"
    spans = receiver.wait_for(complete, final.route.trace_id)
    router = one(spans, "warmpath-router", "/warmpath.v1.Router/Generate", SERVER)
    decided = one(spans, "warmpath-router", "route broken-model")
    assert decided.parent_span_id == router.span_id
    failed = one(spans, "warmpath-router", "load broken-model")
    assert failed.status_code == STATUS_ERROR
    assert failed.parent_span_id == router.span_id
    failed_load = one(spans, "warmpath-gpu-agent", "ensure_loaded broken-model")
    assert failed_load.status_code == STATUS_ERROR
    (event,) = [e for e in router.events if e[0] == "warmpath.fallback"]
    assert event[1]["warmpath.from_model"] == "broken-model"
    assert "UNAVAILABLE" in event[1]["warmpath.reason"]
    assert one(spans, "warmpath-router", "route gemma3-270m").parent_span_id == router.span_id
    assert router.attributes["gen_ai.response.model"] == "gemma3-270m"
    assert router.attributes["warmpath.fallback_hops"] == 1


def test_prompt_text_is_recorded_nowhere_by_default(
    traced_mesh: LocalMesh, receiver: OtlpReceiver
) -> None:
    failures = [
        generate_pb2.GenerateRequest(model="no-such-model", prompt=CANARY),
        generate_pb2.GenerateRequest(model="gemma", prompt=CANARY, temperature=-1),
        generate_pb2.GenerateRequest(
            model="gemma", messages=[generate_pb2.ChatMessage(role=CANARY, content=CANARY)]
        ),
    ]
    for request in failures:
        with pytest.raises(grpc.RpcError) as caught:
            generate(traced_mesh, request)
        assert CANARY not in (caught.value.details() or "")  # type: ignore[attr-defined]
    # A successful chat request too, whose answer may well echo the prompt.
    generate(
        traced_mesh,
        generate_pb2.GenerateRequest(
            model="gemma",
            messages=[generate_pb2.ChatMessage(role="user", content=CANARY)],
            max_tokens=8,
        ),
    )
    receiver.wait_for(
        lambda s: len(s) > 0,
        generate(
            traced_mesh, generate_pb2.GenerateRequest(model="gemma", prompt="x", max_tokens=1)
        ).route.trace_id,
    )
    leaks = [s for s in receiver.spans if CANARY in s.all_text()]
    assert not leaks, leaks
    for log in traced_mesh.log_dir.glob("*.log"):
        assert CANARY not in log.read_text(errors="replace"), log


def test_prompt_text_is_recorded_when_the_operator_opts_in(
    traced_mesh: LocalMesh, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    with grpc.insecure_channel(traced_mesh.ports.address("gpu-agent")) as channel:
        gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model="gemma3-270m")
        )
        state = gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(gpu_agent_pb2.GetStateRequest())
    (gemma,) = [m for m in state.models if m.model == "gemma3-270m"]
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **otel_env(receiver), "WARMPATH_TRACE_CONTENT": "true"}
    adapter = subprocess.Popen(
        [sys.executable, "-m", "warmpath_adapter", "--listen", address],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "adapter.log").open("wb"),
    )
    try:
        wait_serving(address, 30)
        with grpc.insecure_channel(address) as channel:
            list(
                backend_adapter_pb2_grpc.BackendAdapterStub(channel).Generate(
                    backend_adapter_pb2.BackendGenerateRequest(
                        request=generate_pb2.GenerateRequest(
                            prompt=f"{CANARY} opted in", max_tokens=2
                        ),
                        endpoint=gemma.endpoint,
                    ),
                    timeout=60,
                )
            )
    finally:
        adapter.terminate()
        adapter.wait(30)
    recorded = [
        s
        for s in receiver.spans
        if s.name == "text_completion gemma3-270m"
        and CANARY in str(s.attributes.get("gen_ai.input.messages"))
    ]
    assert recorded, "with WARMPATH_TRACE_CONTENT=true the prompt is on the model call span"


def test_a_dead_collector_never_blocks_requests(tmp_path: Path) -> None:
    """Export runs in a background thread with a bounded queue: spans drop, requests do not."""
    dead = dead_collector_env(OTEL_BSP_SCHEDULE_DELAY="50", OTEL_BSP_EXPORT_TIMEOUT="1000")
    mesh = standard_mesh(tmp_path, dead)
    mesh.start()
    try:
        for _ in range(10):
            final = generate(
                mesh, generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=2)
            )
            assert final.usage.output_tokens == 2
            assert len(final.route.trace_id) == 32
    finally:
        codes = mesh.stop()
    assert codes == {"router": 0, "backend-adapter": 0, "gpu-agent": 0}
