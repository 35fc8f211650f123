"""Property-based fuzzing of requests against the real router: whatever a caller sends,
the answer is a status that says what is wrong, never UNKNOWN or INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc
from warmpath_cli.mesh import LocalMesh

pytestmark = pytest.mark.integration

NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
MODELS = st.sampled_from(
    ["", "auto", "gemma", "gemma3-270m", "broken-model", "nope", "GEMMA", " gemma "]
)
text = st.text(max_size=60)


@st.composite
def requests(draw: st.DrawFn) -> generate_pb2.GenerateRequest:
    request = generate_pb2.GenerateRequest(
        model=draw(st.one_of(MODELS, text)),
        prompt=draw(st.one_of(st.just(""), text)),
        stop=draw(st.lists(st.text(max_size=5), max_size=10)),
    )
    for _ in range(draw(st.integers(0, 3))):
        request.messages.append(
            generate_pb2.ChatMessage(
                role=draw(st.one_of(st.sampled_from(["user", "system", "assistant"]), text)),
                content=draw(text),
            )
        )
    if draw(st.booleans()):
        request.max_tokens = draw(st.integers(-(2**31), 2**31 - 1))
    if draw(st.booleans()):
        request.temperature = draw(st.floats(width=32))
    if draw(st.booleans()):
        request.top_p = draw(st.floats(width=32))
    if draw(st.booleans()):
        request.seed = draw(st.integers(-(2**63), 2**63 - 1))
    return request


def status_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def channel(mesh: LocalMesh):  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(mesh.ports.address("router")) as opened:
        yield opened


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests())
def test_route_answers_any_request_with_a_meaningful_status(channel, request) -> None:  # type: ignore[no-untyped-def]
    stub = router_pb2_grpc.RouterStub(channel)
    code = status_of(lambda: stub.Route(router_pb2.RouteRequest(request=request), timeout=10))
    assert code not in NEVER


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=requests())
def test_generate_answers_any_request_with_a_meaningful_status(channel, request) -> None:  # type: ignore[no-untyped-def]
    if request.HasField("max_tokens") and request.max_tokens > 0:
        request.max_tokens = min(request.max_tokens, 3)  # keep real generation short
    stub = router_pb2_grpc.RouterStub(channel)
    code = status_of(lambda: list(stub.Generate(request, timeout=30)))
    assert code not in NEVER


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=300), method=st.sampled_from(["Route", "ListModels"]))
def test_arbitrary_bytes_never_yield_unknown_or_internal(
    channel, payload: bytes, method: str
) -> None:  # type: ignore[no-untyped-def]
    call = channel.unary_unary(
        f"/warmpath.v1.Router/{method}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    assert status_of(lambda: call(payload, timeout=10)) not in NEVER
