"""`warmpath`: talk to a Warmpath router, or run a local mesh.

Errors print one line (status and what to do), never a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import typer
from rich.console import Console
from rich.table import Table

from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc
from warmpath_cli.banner import http_banner
from warmpath_cli.mesh import LocalMesh, MeshError, MeshPorts
from warmpath_common.config import load_config

__all__ = ["main"]

app = typer.Typer(
    help="Warmpath: route LLM requests to GPU-resident models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_T = TypeVar("_T")
# The default model is a small base (not instruction-tuned) model: it continues
# text, so the sample is phrased as a completion with a stop sequence.
DEFAULT_PROMPT = "Q: What is the capital of France?\nA:"


@dataclass(frozen=True)
class Connection:
    """How the CLI reaches the router: plain, or TLS with a client certificate and token."""

    token: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def channel(self, address: str) -> grpc.aio.Channel:
        if self.ca is None:
            return grpc.aio.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )
        return grpc.aio.secure_channel(address, credentials)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


@app.callback()
def connect(
    ctx: typer.Context,
    token: Annotated[
        str | None, typer.Option(envvar="WARMPATH_TOKEN", help="Bearer token for the router.")
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(envvar="WARMPATH_CA", help="CA bundle: use TLS.")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(envvar="WARMPATH_CERT", help="Client certificate (mutual TLS).")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(envvar="WARMPATH_KEY", help="Client certificate's key.")
    ] = None,
) -> None:
    """Options for every command that talks to a router."""
    ctx.obj = Connection(token, ca, cert, key)


RouterOption = Annotated[
    str, typer.Option("--router", envvar="WARMPATH_ROUTER", help="Router address host:port.")
]
JaegerOption = Annotated[
    str | None,
    typer.Option(
        "--jaeger-url", envvar="WARMPATH_JAEGER_URL", help="Jaeger UI URL, to print trace links."
    ),
]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name, alias, or 'auto'.")]
PromptArgument = Annotated[str, typer.Argument(help="The prompt.")]
MaxTokensOption = Annotated[int | None, typer.Option(help="Most tokens to generate.")]


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(coroutine)
    except grpc.aio.AioRpcError as error:
        err.print(f"[red]error[/red] {error.code().name}: {error.details()}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _request(
    prompt: str,
    model: str,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: list[str] | None,
    seed: int | None,
    chat: bool,
) -> generate_pb2.GenerateRequest:
    request = generate_pb2.GenerateRequest(model=model, stop=stop or [])
    if chat:
        request.messages.append(generate_pb2.ChatMessage(role="user", content=prompt))
    else:
        request.prompt = prompt
    if max_tokens is not None:
        request.max_tokens = max_tokens
    if temperature is not None:
        request.temperature = temperature
    if top_p is not None:
        request.top_p = top_p
    if seed is not None:
        request.seed = seed
    return request


def trace_link(trace_id: str, jaeger_url: str | None) -> str:
    """The trace id, with a Jaeger UI link when its URL is configured."""
    if not trace_id:
        return ""
    if jaeger_url:
        return f"trace {jaeger_url.rstrip('/')}/trace/{trace_id}"
    return f"trace {trace_id}"


def _route_summary(
    route: generate_pb2.RouteTaken,
    usage: generate_pb2.Usage,
    finish: str,
    jaeger_url: str | None = None,
) -> str:
    how = generate_pb2.Resolution.Name(route.resolution).removeprefix("RESOLUTION_").lower()
    if route.resolved_from_alias:
        how += f" {route.resolved_from_alias!r}"
    if route.auto_class:
        how += f": {route.auto_class} {route.auto_confidence:.2f}"
    start = (
        (route.load_description or f"cold start, loaded in {route.load_seconds:.1f} s")
        if route.cold_start
        else "warm"
    )
    backend = generate_pb2.BackendKind.Name(route.backend).removeprefix("BACKEND_KIND_").lower()
    parts = [
        f"model {route.served_model} ({how})",
        f"host {route.host} GPU {route.gpu_index} {route.gpu_uuid}"
        + (
            f" ({route.placement.description}; GPUs {', '.join(route.placement.gpu_uuids)})"
            if len(route.placement.gpu_indexes) > 1 or route.placement.host_memory_bytes
            else ""
        ),
        f"backend {backend}",
        start,
        f"tokens in {usage.input_tokens} / out {usage.output_tokens}",
        f"finish {finish}",
    ]
    for hop in route.fallback_hops:
        parts.append(f"fell back {hop.from_model} -> {hop.to_model} ({hop.reason})")
    if route.trace_id:
        parts.append(trace_link(route.trace_id, jaeger_url))
    return "route: " + " | ".join(parts)


async def _generate(
    router: str,
    request: generate_pb2.GenerateRequest,
    timeout: float,
    jaeger_url: str | None = None,
    connection: Connection | None = None,
) -> None:
    connection = connection or Connection()
    async with connection.channel(router) as channel:
        stub = router_pb2_grpc.RouterStub(channel)
        async for chunk in stub.Generate(request, timeout=timeout, metadata=connection.metadata):
            if chunk.text:
                out.out(chunk.text, end="", highlight=False)
            if chunk.finish_reason != generate_pb2.FINISH_REASON_UNSPECIFIED:
                out.out("")
                finish = generate_pb2.FinishReason.Name(chunk.finish_reason)
                finish = finish.removeprefix("FINISH_REASON_").lower()
                err.print(
                    _route_summary(chunk.route, chunk.usage, finish, jaeger_url),
                    style="dim",
                    highlight=False,
                )


@app.command()
def generate(
    ctx: typer.Context,
    prompt: PromptArgument,
    router: RouterOption = "127.0.0.1:50051",
    model: ModelOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: Annotated[float | None, typer.Option(help="0 (greedy) to 2.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus mass in (0, 1].")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop sequence (repeatable).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    chat: Annotated[bool, typer.Option(help="Send the prompt as a chat user turn.")] = False,
    timeout: Annotated[float, typer.Option(help="Deadline in seconds.")] = 300.0,
    jaeger_url: JaegerOption = None,
) -> None:
    """Stream an answer, then print the route it took."""
    request = _request(prompt, model, max_tokens, temperature, top_p, stop, seed, chat)
    _run(_generate(router, request, timeout, jaeger_url, ctx.obj))


@app.command()
def route(
    ctx: typer.Context,
    prompt: PromptArgument,
    router: RouterOption = "127.0.0.1:50051",
    model: ModelOption = "auto",
    max_tokens: MaxTokensOption = None,
    jaeger_url: JaegerOption = None,
) -> None:
    """Explain where a request would go, without loading or generating anything."""

    connection: Connection = ctx.obj

    async def call() -> router_pb2.RouteDecision:
        async with connection.channel(router) as channel:
            request = _request(prompt, model, max_tokens, None, None, None, None, False)
            decision: router_pb2.RouteDecision = await router_pb2_grpc.RouterStub(channel).Route(
                router_pb2.RouteRequest(request=request), timeout=30, metadata=connection.metadata
            )
            return decision

    decision = _run(call())
    reason = router_pb2.RouteReason.Name(decision.reason).removeprefix("ROUTE_REASON_").lower()
    out.print(
        f"[bold]{decision.model}[/bold] on {decision.host} GPU {decision.gpu_index} ({reason})"
    )
    out.print(decision.explanation, highlight=False)
    if decision.placement.description:
        out.print(f"placed: {decision.placement.description}", highlight=False)
        if decision.placement.reason:
            out.print(f"why: {decision.placement.reason}", highlight=False)
    if decision.wake_required:
        out.print(f"wake required (expected {decision.expected_load_seconds:.1f} s)")
    elif decision.load_required:
        out.print(f"load required (expected {decision.expected_load_seconds:.1f} s)")
    if decision.fallback_chain:
        out.print("fallbacks: " + " -> ".join(decision.fallback_chain))
    table = Table("host", "gpu", "resident", "score", "note")
    for c in decision.candidates:
        table.add_row(
            c.host,
            str(c.gpu_index),
            "yes" if c.resident else "no",
            f"{c.score:g}",
            c.rejected_because or "chosen",
        )
    out.print(table)
    if decision.trace_id:
        out.print(trace_link(decision.trace_id, jaeger_url), highlight=False)


@app.command()
def models(ctx: typer.Context, router: RouterOption = "127.0.0.1:50051") -> None:
    """List registered models and where each is resident."""
    connection: Connection = ctx.obj

    async def call() -> router_pb2.ListModelsResponse:
        async with connection.channel(router) as channel:
            listing: router_pb2.ListModelsResponse = await router_pb2_grpc.RouterStub(
                channel
            ).ListModels(router_pb2.ListModelsRequest(), timeout=30, metadata=connection.metadata)
            return listing

    response = _run(call())
    table = Table("model", "aliases", "backend", "context", "resident on")
    for model in response.models:
        backend = generate_pb2.BackendKind.Name(model.backend).removeprefix("BACKEND_KIND_").lower()
        where = (
            ", ".join(
                f"{r.host}/GPU{','.join(map(str, r.placement.gpu_indexes or [r.gpu_index]))}"
                f" ({'asleep in host RAM' if r.state == 'asleep' else r.state}"
                + (
                    f", {r.placement.total_layers - r.placement.gpu_layers} of "
                    f"{r.placement.total_layers} layers in host RAM"
                    if r.placement.host_memory_bytes
                    else ""
                )
                + ")"
                for r in model.replicas
            )
            or "-"
        )
        table.add_row(
            model.name, ", ".join(model.aliases), backend, str(model.context_length), where
        )
    out.print(table)


@app.command()
def up(
    config: Annotated[
        Path | None, typer.Option(envvar="WARMPATH_CONFIG", help="Config file (default: embedded).")
    ] = None,
    log_dir: Annotated[Path, typer.Option(help="Where service logs go.")] = Path(".run/logs"),
    prompt: Annotated[
        str, typer.Option(help="Sample request sent once the mesh is up.")
    ] = DEFAULT_PROMPT,
    model: ModelOption = "auto",
) -> None:
    """Start router, gpu-agent and backend-adapter locally; serve until Ctrl-C."""
    mesh = LocalMesh(config=config, log_dir=log_dir, ports=MeshPorts())
    err.print(f"starting gpu-agent, backend-adapter and router (logs in {log_dir}/)")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    # Ctrl-C is how `up` stops; a shell that starts it in the background (`make run &`
    # in a script) hands it SIGINT ignored, and Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        mesh.start()
        err.print("mesh is up: router on 127.0.0.1:50051; sending a sample request", style="green")
        err.print(
            f"$ warmpath generate {prompt!r} --max-tokens 32 --temperature 0 --stop '\\n'",
            style="dim",
            highlight=False,
        )
        sample = _request(prompt, model, 32, 0.0, None, ["\n"], None, False)
        try:
            _run(_generate(mesh.ports.address("router"), sample, 300))
        except typer.Exit:
            err.print(
                "the sample request failed; the mesh keeps serving (see the logs)", style="yellow"
            )
        err.print(
            "serving until Ctrl-C. In another terminal try: .venv/bin/warmpath models, "
            "warmpath route 'hi', warmpath generate 'The sky is'"
        )
        http = http_banner(load_config(config))
        if http:
            err.print(http[0])
            err.print(http[1], style="dim", highlight=False)
        _wait(stopped.is_set)
    except MeshError as error:
        err.print(f"[red]error[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    finally:
        err.print("stopping the mesh...")
        codes = mesh.stop()
        err.print("stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))


@app.command("hash-token")
def hash_token(
    token: Annotated[
        str, typer.Option(prompt=True, hide_input=True, help="The token (prompted if not given).")
    ],
) -> None:
    """Print the SHA-256 to put in security.tokens[].sha256 (the token itself stays secret)."""
    out.print(hashlib.sha256(token.encode()).hexdigest(), highlight=False)


def _wait(done: Callable[[], bool]) -> None:
    while not done():
        threading.Event().wait(0.5)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
