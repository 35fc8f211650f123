"""Through all three real services to the real llama.cpp server and back."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import metric_total
from tests.integration.conftest import llama_completions
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_cli.mesh import LocalMesh

pytestmark = pytest.mark.integration


async def generate(
    channel: grpc.aio.Channel, request: generate_pb2.GenerateRequest
) -> tuple[str, generate_pb2.GenerateResponse, int]:
    text, final, chunks = "", None, 0
    async for chunk in router_pb2_grpc.RouterStub(channel).Generate(request, timeout=120):
        chunks += 1
        text += chunk.text
        if chunk.finish_reason:
            final = chunk
    assert final is not None, "stream ended without a final chunk"
    return text, final, chunks


async def resident_models(channel: grpc.aio.Channel) -> set[str]:
    state = await gpu_agent_pb2_grpc.GpuAgentStub(channel).GetState(gpu_agent_pb2.GetStateRequest())
    return {m.model for m in state.models}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (generate_pb2.GenerateRequest(model="untouched", prompt=""), "prompt is empty"),
        (generate_pb2.GenerateRequest(model="untouched", prompt="hi", max_tokens=0), "max_tokens"),
        (
            generate_pb2.GenerateRequest(model="untouched", prompt="hi", max_tokens=4096),
            "context length",
        ),
        (
            generate_pb2.GenerateRequest(model="untouched", prompt="hi", temperature=-1),
            "temperature",
        ),
    ],
)
async def test_invalid_requests_fail_before_any_backend_work(
    router_channel: grpc.aio.Channel,
    agent_channel: grpc.aio.Channel,
    request_: generate_pb2.GenerateRequest,
    message: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generate(router_channel, request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (caught.value.details() or "")
    assert "gemma-untouched" not in await resident_models(agent_channel)


async def test_unknown_model_is_not_found_with_the_list(router_channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await generate(
            router_channel, generate_pb2.GenerateRequest(model="gemma3-27b", prompt="hi")
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    details = caught.value.details() or ""
    assert "available models: broken-model, gemma-untouched, gemma3-270m, huge-model" in details
    assert "closest matches: gemma3-270m" in details


async def test_route_explains_without_loading(
    router_channel: grpc.aio.Channel, agent_channel: grpc.aio.Channel
) -> None:
    decision = await router_pb2_grpc.RouterStub(router_channel).Route(
        router_pb2.RouteRequest(
            request=generate_pb2.GenerateRequest(model="untouched", prompt="hi")
        )
    )
    assert decision.model == "gemma-untouched"
    assert decision.resolved_from_alias == "untouched"
    assert decision.host == "local"
    assert decision.load_required
    assert decision.reason == router_pb2.ROUTE_REASON_LOAD_REQUIRED
    assert decision.candidates[0].host == "local"
    assert "gemma-untouched" not in await resident_models(agent_channel)


async def test_generate_streams_a_real_answer_with_usage_and_route(
    router_channel: grpc.aio.Channel, agent_channel: grpc.aio.Channel
) -> None:
    prompt = "The capital of France is"
    text, final, chunks = await generate(
        router_channel,
        generate_pb2.GenerateRequest(model="gemma", prompt=prompt, max_tokens=8, temperature=0),
    )
    assert text.strip()
    assert chunks > 2, "the answer should arrive as a stream, not one message"
    assert final.finish_reason == generate_pb2.FINISH_REASON_LENGTH
    # The same greedy request straight to the llama.cpp server, unstreamed:
    # the relay must change neither the text nor the token counts.
    state = await gpu_agent_pb2_grpc.GpuAgentStub(agent_channel).GetState(
        gpu_agent_pb2.GetStateRequest()
    )
    (gemma,) = [m for m in state.models if m.model == "gemma3-270m"]
    async with httpx.AsyncClient() as client:
        direct = (
            await client.post(
                gemma.endpoint.base_url + "/v1/completions",
                json={"prompt": prompt, "max_tokens": 8, "temperature": 0},
                timeout=60,
            )
        ).json()
    assert text == direct["choices"][0]["text"]
    assert final.usage.output_tokens == direct["usage"]["completion_tokens"] == 8
    assert final.usage.input_tokens == direct["usage"]["prompt_tokens"]
    route = final.route
    assert route.served_model == "gemma3-270m"
    assert route.requested_model == "gemma"
    assert route.resolved_from_alias == "gemma"
    assert route.resolution == generate_pb2.RESOLUTION_ALIAS
    assert route.host == "local"
    assert route.gpu_uuid.startswith("SIM-")
    assert route.backend == generate_pb2.BACKEND_KIND_LLAMA_CPP
    assert not route.fallback_hops


async def test_chat_messages_and_stop_sequences(router_channel: grpc.aio.Channel) -> None:
    _text, final, _ = await generate(
        router_channel,
        generate_pb2.GenerateRequest(
            model="gemma3-270m",
            messages=[generate_pb2.ChatMessage(role="user", content="Count: one, two, three")],
            max_tokens=16,
            temperature=0,
        ),
    )
    assert final.usage.output_tokens > 0
    assert final.route.resolution == generate_pb2.RESOLUTION_EXACT


async def test_second_request_is_warm(router_channel: grpc.aio.Channel) -> None:
    request = generate_pb2.GenerateRequest(model="gemma3-270m", prompt="Hello", max_tokens=2)
    await generate(router_channel, request)
    _, final, _ = await generate(router_channel, request)
    assert not final.route.cold_start
    assert final.route.load_seconds == 0


async def test_auto_says_it_chose(router_channel: grpc.aio.Channel) -> None:
    _, final, _ = await generate(
        router_channel, generate_pb2.GenerateRequest(model="auto", prompt="Hi", max_tokens=2)
    )
    assert final.route.resolution == generate_pb2.RESOLUTION_AUTO
    assert final.route.served_model == "gemma3-270m"


async def test_failed_load_takes_the_configured_fallback_and_says_so(
    router_channel: grpc.aio.Channel,
) -> None:
    _, final, _ = await generate(
        router_channel,
        generate_pb2.GenerateRequest(model="broken-model", prompt="Hi", max_tokens=2),
    )
    assert final.route.served_model == "gemma3-270m"
    (hop,) = final.route.fallback_hops
    assert hop.from_model == "broken-model" and hop.to_model == "gemma3-270m"
    assert "UNAVAILABLE" in hop.reason and "does not exist" in hop.reason
    # The agent was fine, and its paths mean nothing to a remote caller.
    assert "could not load broken-model on local: its model file" in hop.reason
    assert "/nonexistent" not in hop.reason and "gpu-agent local is unavailable" not in hop.reason


async def test_the_fallback_chain_is_walked_to_its_end(router_channel: grpc.aio.Channel) -> None:
    request = generate_pb2.GenerateRequest(model="huge-model", prompt="Hi", max_tokens=2)
    stub = router_pb2_grpc.RouterStub(router_channel)
    decision = await stub.Route(router_pb2.RouteRequest(request=request))
    assert list(decision.fallback_chain) == ["broken-model", "gemma3-270m"]
    _, final, _ = await generate(router_channel, request)
    assert final.route.served_model == "gemma3-270m"
    assert [(h.from_model, h.to_model) for h in final.route.fallback_hops] == [
        ("huge-model", "broken-model"),
        ("broken-model", "gemma3-270m"),
    ]


async def test_list_models_shows_residency(router_channel: grpc.aio.Channel) -> None:
    await generate(
        router_channel, generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=1)
    )
    listing = await router_pb2_grpc.RouterStub(router_channel).ListModels(
        router_pb2.ListModelsRequest()
    )
    by_name = {m.name: m for m in listing.models}
    assert set(by_name) == {"gemma3-270m", "gemma-untouched", "broken-model", "huge-model"}
    assert list(by_name["gemma3-270m"].aliases) == ["gemma", "default"]
    assert any(r.state == "ready" for r in by_name["gemma3-270m"].replicas)


async def test_agent_state_is_labelled_simulated(agent_channel: grpc.aio.Channel) -> None:
    state = await gpu_agent_pb2_grpc.GpuAgentStub(agent_channel).GetState(
        gpu_agent_pb2.GetStateRequest()
    )
    assert state.simulated
    assert state.gpus[0].name == "Test GPU"
    assert state.gpus[0].memory_total_bytes == 4 * 1024**3


@pytest.mark.parametrize(
    ("service", "name"),
    [
        ("router", "warmpath.v1.Router"),
        ("gpu-agent", "warmpath.v1.GpuAgent"),
        ("backend-adapter", "warmpath.v1.BackendAdapter"),
    ],
)
async def test_health_is_serving(mesh: LocalMesh, service: str, name: str) -> None:
    async with grpc.aio.insecure_channel(mesh.ports.address(service)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for checked in ("", name):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=checked))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(mesh: LocalMesh) -> None:
    for service, name in [
        ("router", "warmpath.v1.Router"),
        ("gpu-agent", "warmpath.v1.GpuAgent"),
        ("backend-adapter", "warmpath.v1.BackendAdapter"),
    ]:
        with grpc.insecure_channel(mesh.ports.address(service)) as channel:
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {name, "grpc.health.v1.Health"} <= services


def scrape(mesh: LocalMesh, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert mesh.ports.metrics is not None
    text = httpx.get(f"http://127.0.0.1:{mesh.ports.metrics[service]}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_are_exposed_for_prometheus(
    mesh: LocalMesh, router_channel: grpc.aio.Channel
) -> None:
    await generate(
        router_channel, generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=3)
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await generate(router_channel, generate_pb2.GenerateRequest(model="nope", prompt="Hi"))

    router = scrape(mesh, "router")
    assert (
        router[("warmpath_router_requests_total", (("model", "gemma3-270m"), ("outcome", "OK")))]
        >= 1
    )
    assert (
        router[("warmpath_router_requests_total", (("model", "none"), ("outcome", "NOT_FOUND")))]
        >= 1
    )
    assert router[("warmpath_router_output_tokens_total", (("model", "gemma3-270m"),))] >= 3
    assert router[("warmpath_router_in_flight_requests", ())] == 0
    assert (
        router[("warmpath_router_time_to_first_token_seconds_count", (("model", "gemma3-270m"),))]
        >= 1
    )

    agent = scrape(mesh, "gpu-agent")
    assert agent[("warmpath_agent_loads_total", (("model", "gemma3-270m"), ("outcome", "ok")))] >= 1
    gpu = (
        ("gpu", "0"),
        ("simulated", "true"),
        ("uuid", "SIM-00000000-0000-0000-0000-000000000000"),
    )
    assert agent[("warmpath_agent_gpu_memory_total_bytes", gpu)] == 4 * 1024**3
    assert agent[("warmpath_agent_gpu_memory_used_bytes", gpu)] > 0

    adapter = scrape(mesh, "backend-adapter")
    assert (
        adapter[("warmpath_adapter_requests_total", (("backend", "llama_cpp"), ("outcome", "OK")))]
        >= 1
    )
    assert adapter[("warmpath_adapter_in_flight_requests", ())] == 0

    async with grpc.aio.insecure_channel(mesh.ports.address("gpu-agent")) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert scrape(mesh, "gpu-agent")[("warmpath_health_probes_total", (("method", "Check"),))] >= 1


async def test_a_client_cancel_stops_generation_at_llama_cpp(
    mesh: LocalMesh, router_channel: grpc.aio.Channel
) -> None:
    """The cancelled request stopped at llama.cpp (see llama_completions)."""
    stub = router_pb2_grpc.RouterStub(router_channel)
    await generate(
        router_channel, generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=1)
    )
    _, already = llama_completions(mesh)

    long_call = stub.Generate(
        generate_pb2.GenerateRequest(model="gemma", prompt="Once upon a time", max_tokens=1500),
        timeout=120,
    )
    received = 0
    async for _ in long_call:
        received += 1
        if received == 5:
            break
    long_call.cancel()
    _, final, _ = await generate(
        router_channel, generate_pb2.GenerateRequest(model="gemma", prompt="Hi", max_tokens=4)
    )
    assert final.usage.output_tokens == 4
    completions, _ = llama_completions(mesh, already)
    assert completions == ["4"], f"the cancelled request ran on: {completions}"


async def test_route_predicts_generate_and_loads_nothing(
    mesh: LocalMesh, router_channel: grpc.aio.Channel
) -> None:
    def loads() -> float:
        assert mesh.ports.metrics is not None
        return metric_total(mesh.ports.metrics["gpu-agent"], "warmpath_agent_loads_total")

    request = generate_pb2.GenerateRequest(model="untouched", prompt="Hello", max_tokens=2)
    before = loads()
    decision = await router_pb2_grpc.RouterStub(router_channel).Route(
        router_pb2.RouteRequest(request=request)
    )
    assert loads() == before, "Route loaded a model"
    _, final, _ = await generate(router_channel, request)
    assert (final.route.served_model, final.route.host) == (decision.model, decision.host)
    assert final.route.cold_start == decision.load_required
    assert loads() == before + 1


async def test_concurrent_requests_queue_at_llama_cpp_instead_of_cutting_each_other_off(
    router_channel: grpc.aio.Channel,
) -> None:
    """llama-cpp-python's server abandons the stream it is serving when another request
    arrives unless told otherwise; concurrent callers must all get whole answers."""
    request = generate_pb2.GenerateRequest(model="gemma", prompt="Once upon a time", max_tokens=8)
    results = await asyncio.gather(*(generate(router_channel, request) for _ in range(4)))
    for _, final, _ in results:
        assert final.finish_reason == generate_pb2.FINISH_REASON_LENGTH
        assert final.usage.output_tokens == 8
