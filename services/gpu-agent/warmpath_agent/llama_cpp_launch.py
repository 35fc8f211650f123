"""How a llama.cpp server is launched: its model file, its placement flags, and how a
recorded launch differs from the one the config asks for now (adoption compares them)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from warmpath_agent.child_record import ChildRecord
from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed
from warmpath_agent.layouts import Layout
from warmpath_common.config import ModelSource, ModelSpec, Runtime

__all__ = [
    "SERVER_COMMAND",
    "ServerLaunch",
    "check_launched_as_now",
    "launch_differences",
    "placement_arguments",
    "placement_words",
    "resolve_model_file",
]

SERVER_COMMAND = (sys.executable, "-m", "llama_cpp.server")
"""llama-cpp-python's OpenAI-compatible server."""


def resolve_model_file(source: ModelSource) -> Path:
    """The GGUF file for a source. Blocking (may assemble a packaged file): call in a thread."""
    if source.path is not None:
        if not source.path.is_file():
            raise ModelLoadFailed(
                f"model file {source.path} does not exist",
                for_caller="its model file (source.path) does not exist on the host",
            )
        return source.path
    if source.python_package is not None:
        try:
            package = importlib.import_module(source.python_package)
        except ImportError as error:
            raise ModelLoadFailed(
                f"model package {source.python_package!r} is not installed "
                "(run `make install`, which installs the default model package)"
            ) from error
        assemble = getattr(package, "assemble", None)
        if assemble is None:
            raise ModelLoadFailed(f"package {source.python_package!r} has no assemble()")
        return Path(assemble())
    raise ModelLoadFailed("the llama.cpp process driver needs a path or python_package source")


@dataclass(frozen=True, slots=True)
class ServerLaunch:
    """How the driver runs one model's server."""

    command: tuple[str, ...]
    env: dict[str, str]
    """Set on top of the agent's own environment."""


# Options whose values the driver itself derives from the config: their values are
# safe to log. Anything else came from extra_args and may hold a key or token.
_LOGGABLE_OPTIONS = frozenset(
    {"--model", "--model_alias", "--host", "--port", "--n_ctx", "--n_gpu_layers",
     "--split_mode", "--tensor_split", "--interrupt_requests", "--chat_format"}
)  # fmt: skip


def placement_arguments(placement: GpuPlacement, *, simulated: bool) -> tuple[str, ...]:
    """llama.cpp's flags for a placement: every layer on the GPUs (n_gpu_layers -1), or
    K of them for a partial offload; a gang of several GPUs splits by layers
    (split_mode 1) with each GPU's share (tensor_split). A simulated GPU runs on the CPU
    (CUDA_VISIBLE_DEVICES is empty), where a CPU build takes the flags and ignores them."""
    if placement.gpu_layers is not None:
        layers = str(placement.gpu_layers)
    else:
        # A single simulated GPU keeps its old launch (adopted servers compare it).
        layers = "0" if simulated and len(placement.gpus) == 1 else "-1"
    words: tuple[str, ...] = ("--n_gpu_layers", layers)
    if len(placement.gpus) > 1 and placement.layout is not Layout.TENSOR_PARALLEL:
        shares = placement.shares or tuple(1 / len(placement.gpus) for _ in placement.gpus)
        words += ("--split_mode", "1", "--tensor_split", *(f"{s:.4f}" for s in shares))
    return words


_PLACEMENT_OPTIONS = frozenset({"--n_gpu_layers", "--split_mode", "--tensor_split"})


def placement_words(command: Sequence[str]) -> tuple[str, ...]:
    """The placement_arguments in a recorded command, in order."""
    words: list[str] = []
    taking = False
    for word in command:
        if word.startswith("--"):
            taking = word in _PLACEMENT_OPTIONS
        if taking:
            words.append(word)
    return tuple(words)


def launch_differences(recorded: ServerLaunch, now: ServerLaunch, prefix: int) -> list[str]:
    """How `recorded` differs from `now`, one entry per setting (e.g. "--n_ctx 2048 ->
    4096"); empty when they are the same launch. The first `prefix` words are the
    server program. Values of options the driver does not set are never shown."""
    differences = []
    if recorded.command[:prefix] != now.command[:prefix]:
        differences.append(
            f"server program {' '.join(recorded.command[:prefix])} -> "
            f"{' '.join(now.command[:prefix])}"
        )
    old, new = _options(recorded.command[prefix:]), _options(now.command[prefix:])
    for name in [*old, *(name for name in new if name not in old)]:
        if old.get(name) == new.get(name):
            continue
        if name in _LOGGABLE_OPTIONS:
            differences.append(f"{name} {_shown(old.get(name))} -> {_shown(new.get(name))}")
        elif name.startswith("--"):
            differences.append(f"{name} differs (an extra argument: values not logged)")
        else:
            differences.append("the extra arguments differ (values not logged)")
    if not differences and recorded.command != now.command:
        differences.append("the extra arguments are in another order")
    for variable in sorted(recorded.env.keys() | now.env.keys()):
        before, after = recorded.env.get(variable), now.env.get(variable)
        if before != after:
            differences.append(f"{variable} {before!r} -> {after!r}")
    # Several stray words would each say the same.
    return list(dict.fromkeys(differences))


def _options(args: Sequence[str]) -> dict[str, list[str | None]]:
    """Each option's values in order (None for a bare flag); a word that follows no
    option counts as an option of its own."""
    found: dict[str, list[str | None]] = {}
    index = 0
    while index < len(args):
        name = args[index]
        value = args[index + 1] if index + 1 < len(args) else None
        if name.startswith("--") and value is not None and not value.startswith("--"):
            found.setdefault(name, []).append(value)
            index += 2
        else:
            found.setdefault(name, []).append(None)
            index += 1
    return found


def _shown(values: list[str | None] | None) -> str:
    if not values:
        return "(unset)"
    return " ".join("(set)" if value is None else value for value in values)


async def check_launched_as_now(
    record: ChildRecord,
    spec: ModelSpec | None,
    launch: Callable[..., ServerLaunch],
    program_words: int,
) -> None:
    """Raises ModelLoadFailed, saying why, unless the recorded server is the one the config
    would launch now (`spec`; None: no longer served). `launch` is
    LlamaCppProcessDriver.launch; the first `program_words` words of a command are the
    server program."""
    if spec is None or spec.effective_runtime is not Runtime.PROCESS:
        raise ModelLoadFailed("this host no longer serves that model as a process")
    try:
        wanted = await asyncio.to_thread(resolve_model_file, spec.source)
    except ModelLoadFailed as error:
        raise ModelLoadFailed(f"its configured source does not resolve ({error})") from error
    if str(wanted) != record.model_file:
        raise ModelLoadFailed(f"it serves {record.model_file}, but config names {wanted}")
    if record.env is None or record.gpu_simulated is None:
        # Its environment cannot be checked: a fresh server is the safe side.
        raise ModelLoadFailed("its record predates recorded launch environments")
    # Which GPU the server is on is the residency manager's check (it knows the
    # inventory, and a simulated GPU's UUID is never a real one's); the GPU as
    # recorded stands in for it here.
    # So does the placement (GPUs, split, layers on GPUs): the agent chose it
    # then, and the GPU list is matched against the inventory on adoption.
    now = launch(
        spec,
        wanted,
        record.port,
        gpu_uuid=record.gpu_uuid,
        simulated=record.gpu_simulated,
        placement_words=placement_words(record.command),
    )
    differences = launch_differences(ServerLaunch(record.command, record.env), now, program_words)
    if differences:
        raise ModelLoadFailed(
            "it was launched otherwise than the config launches it now: " + "; ".join(differences)
        )
