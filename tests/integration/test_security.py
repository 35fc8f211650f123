"""TLS, mutual TLS and bearer tokens on real processes, with a CA the test makes itself."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import grpc
import httpx
import openai
import pytest
import trustme
import yaml

from tests.integration.conftest import mesh_config
from warmpath.v1 import (
    backend_adapter_pb2,
    backend_adapter_pb2_grpc,
    generate_pb2,
    gpu_agent_pb2,
    gpu_agent_pb2_grpc,
    router_pb2_grpc,
)
from warmpath_cli.mesh import LocalMesh, MeshPorts
from warmpath_common.security import hash_token

pytestmark = pytest.mark.integration

TEAM_A_TOKEN = "secret-token-a-5d41402abc4b2a76"
TEAM_B_TOKEN = "secret-token-b-7d793037a0760186"


@dataclass
class Pki:
    ca: Path
    files: dict[str, tuple[Path, Path]]

    def credentials(self, who: str) -> grpc.ChannelCredentials:
        cert, key = self.files[who]
        return grpc.ssl_channel_credentials(
            self.ca.read_bytes(), key.read_bytes(), cert.read_bytes()
        )

    def tls(self, who: str) -> dict[str, str]:
        cert, key = self.files[who]
        return {"cert": str(cert), "key": str(key), "ca": str(self.ca)}


def make_pki(root: Path) -> Pki:
    authority = trustme.CA()
    ca = root / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    files = {}
    for who in ("warmpath-router", "warmpath-gpu-agent", "warmpath-backend-adapter", "some-user"):
        issued = authority.issue_cert("127.0.0.1", "localhost", common_name=who)
        cert, key = root / f"{who}.pem", root / f"{who}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        files[who] = (cert, key)
    return Pki(ca, files)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalMesh, Pki]]:
    root = tmp_path_factory.mktemp("secured")
    pki = make_pki(root)
    ports = MeshPorts.free()
    config = mesh_config(ports)
    config["router"]["tls"] = pki.tls("warmpath-router")  # type: ignore[index]
    config["agent"]["tls"] = pki.tls("warmpath-gpu-agent")  # type: ignore[index]
    config["adapter"] = {"tls": pki.tls("warmpath-backend-adapter")}
    config["security"] = {
        "enabled": True,
        "tokens": [
            {"name": "team-a", "sha256": hash_token(TEAM_A_TOKEN), "models": ["gemma3-270m"]},
            {"name": "team-b", "sha256": hash_token(TEAM_B_TOKEN), "models": ["gemma-untouched"]},
        ],
    }
    path = root / "warmpath.yaml"
    path.write_text(yaml.safe_dump(config))
    mesh = LocalMesh(
        config=path,
        log_dir=root / "logs",
        ports=ports,
        health_credentials=pki.credentials("some-user"),
    )
    mesh.start()
    yield mesh, pki
    assert mesh.stop() == {"router": 0, "backend-adapter": 0, "gpu-agent": 0}


def call_generate(
    mesh: LocalMesh, credentials: grpc.ChannelCredentials | None, token: str | None
) -> str:
    address = mesh.ports.address("router")
    channel = (
        grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    )
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    request = generate_pb2.GenerateRequest(model="gemma", prompt="The sky is", max_tokens=3)
    with channel:
        chunks = list(
            router_pb2_grpc.RouterStub(channel).Generate(request, metadata=metadata, timeout=60)
        )
    return chunks[-1].route.served_model


def status(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""  # type: ignore[attr-defined]


def test_a_token_with_the_model_gets_an_answer(secured: tuple[LocalMesh, Pki]) -> None:
    mesh, pki = secured
    assert call_generate(mesh, pki.credentials("some-user"), TEAM_A_TOKEN) == "gemma3-270m"


def test_callers_without_tls_or_a_valid_token_are_refused(secured: tuple[LocalMesh, Pki]) -> None:
    mesh, pki = secured
    user = pki.credentials("some-user")
    assert status(lambda: call_generate(mesh, None, TEAM_A_TOKEN))[0] is grpc.StatusCode.UNAVAILABLE
    code, details = status(lambda: call_generate(mesh, user, None))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "bearer token" in details
    code, details = status(lambda: call_generate(mesh, user, "not-a-token"))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    code, details = status(lambda: call_generate(mesh, user, TEAM_B_TOKEN))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "caller team-b may not use gemma3-270m (which 'gemma' resolved to)" in details


def test_only_the_router_may_load_models_or_reach_model_servers(
    secured: tuple[LocalMesh, Pki],
) -> None:
    mesh, pki = secured
    user = pki.credentials("some-user")
    with grpc.secure_channel(mesh.ports.address("gpu-agent"), user) as channel:
        agent = gpu_agent_pb2_grpc.GpuAgentStub(channel)
        assert agent.GetState(gpu_agent_pb2.GetStateRequest()).host == "local"
        code, details = status(
            lambda: agent.EnsureLoaded(gpu_agent_pb2.EnsureLoadedRequest(model="gemma3-270m"))
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "only for the router" in details and "some-user" in details
        code, _ = status(
            lambda: agent.Unload(gpu_agent_pb2.UnloadRequest(model="gemma3-270m", force=True))
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
    with grpc.secure_channel(mesh.ports.address("backend-adapter"), user) as channel:
        adapter = backend_adapter_pb2_grpc.BackendAdapterStub(channel)
        code, _ = status(
            lambda: list(adapter.Generate(backend_adapter_pb2.BackendGenerateRequest(), timeout=10))
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED


def test_the_cli_speaks_tls_with_a_token(secured: tuple[LocalMesh, Pki]) -> None:
    mesh, pki = secured
    cert, key = pki.files["some-user"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "warmpath_cli",
            "--ca",
            str(pki.ca),
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--token",
            TEAM_A_TOKEN,
            "models",
            "--router",
            mesh.ports.address("router"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "gemma3-270m" in result.stdout


def test_tokens_never_reach_the_logs(secured: tuple[LocalMesh, Pki]) -> None:
    mesh, _ = secured
    for log in mesh.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert TEAM_A_TOKEN not in text and TEAM_B_TOKEN not in text, log


def test_security_enabled_without_certificates_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "warmpath.yaml"
    config.write_text(
        yaml.safe_dump({**mesh_config(MeshPorts.free()), "security": {"enabled": True}})
    )
    result = subprocess.run(
        [sys.executable, "-m", "warmpath_router", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    for missing in (
        "router.tls is not set",
        "agent.tls is not set",
        "adapter.tls is not set",
        "security.tokens is empty",
    ):
        assert missing in result.stderr


def test_the_http_front_door_takes_the_same_certificates_and_tokens(
    secured: tuple[LocalMesh, Pki],
) -> None:
    mesh, pki = secured
    url = f"https://127.0.0.1:{mesh.ports.http}"
    story = [{"role": "user", "content": "The sky is"}]
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(*pki.files["some-user"])
    with httpx.Client(verify=context, timeout=60) as http:

        def chat(token: str) -> str:
            client = openai.OpenAI(
                base_url=url + "/v1", api_key=token, http_client=http, max_retries=0
            )
            return client.chat.completions.create(model="gemma", messages=story, max_tokens=3).model

        assert chat(TEAM_A_TOKEN) == "gemma3-270m"
        with pytest.raises(openai.AuthenticationError):
            chat("not-a-token")
        with pytest.raises(openai.PermissionDeniedError, match="team-b may not use gemma3-270m"):
            chat(TEAM_B_TOKEN)
    # The anthropic client brings its own HTTP client package.
    with anthropic.DefaultHttpxClient(verify=context, timeout=60) as http:
        claude = anthropic.Anthropic(
            base_url=url, api_key=TEAM_A_TOKEN, http_client=http, max_retries=0
        )
        message = claude.messages.create(model="gemma", max_tokens=3, messages=story)
        assert message.model == "gemma3-270m"
    # Mutual TLS, as on gRPC: no client certificate, no answer; nor over plain HTTP.
    anonymous = ssl.create_default_context(cafile=str(pki.ca))
    with httpx.Client(verify=anonymous, timeout=10) as http, pytest.raises(httpx.TransportError):
        http.get(url + "/v1/models", headers={"authorization": f"Bearer {TEAM_A_TOKEN}"})
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https", "http") + "/v1/models", timeout=10)
