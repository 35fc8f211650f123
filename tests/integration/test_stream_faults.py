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

from tests.conftest import GEMMA
from tests.fakes.faulty_openai import FaultyOpenAI
from warmpath.v1 import backend_adapter_pb2, backend_adapter_pb2_grpc, generate_pb2, gpu_agent_pb2
from warmpath_cli.mesh import free_port, wait_serving

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
