"""Stream faults through a real backend-adapter process: the caller always gets what was
already sent and then a clear non-OK status, never a silent OK."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
import yaml

from tests.conftest import GEMMA, router_side_error
from tests.fakes.faulty_openai import FaultyOpenAI
from warmpath.v1 import backend_adapter_pb2, backend_adapter_pb2_grpc, generate_pb2, gpu_agent_pb2
from warmpath_cli.mesh import free_port, wait_serving
from warmpath_common.errors import NOT_SENT_METADATA_KEY, Unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def backend() -> Iterator[FaultyOpenAI]:
    with FaultyOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("faults")
    config = root / "warmpath.yaml"
    config.write_text(yaml.safe_dump({"models": [GEMMA], "adapter": {"idle_timeout_seconds": 1.5}}))
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "warmpath_adapter", "--config", str(config), "--listen", address],
        stdout=subprocess.DEVNULL,
        stderr=(root / "adapter.log").open("wb"),
    )
    try:
        wait_serving(address, 60)
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def stream(
    adapter: str, url: str, mode: str
) -> tuple[str, generate_pb2.GenerateResponse | None, grpc.RpcError | None]:
    request = backend_adapter_pb2.BackendGenerateRequest(
        request=generate_pb2.GenerateRequest(prompt="hi", max_tokens=8),
        endpoint=gpu_agent_pb2.BackendEndpoint(
            kind=generate_pb2.BACKEND_KIND_VLLM, base_url=url, served_model_id=mode
        ),
    )
    text, final, error = "", None, None
    with grpc.insecure_channel(adapter) as channel:
        try:
            for chunk in backend_adapter_pb2_grpc.BackendAdapterStub(channel).Generate(
                request, timeout=30
            ):
                text += chunk.text
                if chunk.finish_reason:
                    final = chunk
        except grpc.RpcError as caught:
            error = caught
    return text, final, error


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("ok-stop", generate_pb2.FINISH_REASON_STOP),
        ("ok-length", generate_pb2.FINISH_REASON_LENGTH),
    ],
)
def test_finish_reasons_and_usage_pass_through(
    adapter: str, backend: FaultyOpenAI, mode: str, reason: int
) -> None:
    text, final, error = stream(adapter, backend.url, mode)
    assert error is None and final is not None
    assert text == "one two three"
    assert final.finish_reason == reason
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("cut", grpc.StatusCode.UNAVAILABLE, "without a finish reason"),
        ("stall", grpc.StatusCode.DEADLINE_EXCEEDED, "stalled"),
        ("truncated", grpc.StatusCode.UNAVAILABLE, "without a finish reason"),
        ("garbled", grpc.StatusCode.UNAVAILABLE, "malformed"),
    ],
)
def test_a_broken_stream_keeps_what_was_sent_and_ends_non_ok(
    adapter: str, backend: FaultyOpenAI, mode: str, code: grpc.StatusCode, words: str
) -> None:
    text, final, error = stream(adapter, backend.url, mode)
    assert final is None, "a broken stream must never look finished"
    assert text.startswith("one")
    assert error is not None and error.code() is code  # type: ignore[attr-defined]
    assert words in (error.details() or "")  # type: ignore[attr-defined]


def test_a_backend_that_is_gone_is_unavailable(adapter: str) -> None:
    _, final, error = stream(adapter, f"http://127.0.0.1:{free_port()}", "ok-stop")
    assert final is None and error is not None
    assert error.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "cannot connect" in (error.details() or "")  # type: ignore[attr-defined]


def test_connections_to_the_model_server_are_reused(adapter: str, backend: FaultyOpenAI) -> None:
    backend.connections.clear()
    for _ in range(5):
        _, final, error = stream(adapter, backend.url, "keepalive")
        assert error is None and final is not None
    assert len(backend.connections) == 1, "each request opened a new connection"


def test_a_refused_model_server_connection_is_marked_not_sent_on_the_wire(adapter: str) -> None:
    _, _, error = stream(adapter, f"http://127.0.0.1:{free_port()}", "ok-stop")
    assert error is not None
    assert (NOT_SENT_METADATA_KEY, "true") in tuple(error.trailing_metadata())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mode", "not_sent"),
    [
        ("busy", True),  # the model server refused it (503) before generating
        ("cut-early", False),  # accepted, then cut before the first token
        ("cut", False),  # cut after two chunks
    ],
)
async def test_the_not_sent_mark_survives_the_hop_to_the_router(
    adapter: str, backend: FaultyOpenAI, mode: str, not_sent: bool
) -> None:
    error = await router_side_error(adapter, backend.url, mode)
    assert isinstance(error, Unavailable)
    assert error.not_sent is not_sent, error.message
    assert not error.backend_down, "the server is there: its agent has nothing to restart"
    assert mode in backend.requests_seen


async def test_a_refused_connection_to_the_model_server_is_not_sent_at_the_router(
    adapter: str,
) -> None:
    error = await router_side_error(adapter, f"http://127.0.0.1:{free_port()}", "ok-stop")
    assert isinstance(error, Unavailable) and error.not_sent, error.message
    # Nothing listens there: the router asks the model's agent before giving up.
    assert error.backend_down, error.message


async def test_an_adapter_nobody_listens_for_is_not_sent_at_the_router() -> None:
    error = await router_side_error(f"127.0.0.1:{free_port()}", "http://127.0.0.1:1", "ok-stop")
    assert isinstance(error, Unavailable) and error.not_sent, error.message
