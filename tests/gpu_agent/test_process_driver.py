"""The llama.cpp process driver's records and adoption, without llama.cpp.

A tiny Python HTTP server stands in for `python -m llama_cpp.server`: it takes
the same arguments, ignores what it does not need, and answers GET /v1/models
with its `--model_alias` (or `--fake_id`, to play a server for another model;
`--fake_mute` never answers). Real `sleep` processes check the pid and start
time logic. Every test kills what it started, whatever the driver did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from warmpath_agent.child_record import ChildRecord, record_path, write_record
from warmpath_agent.drivers import GpuPlacement, RunningModel
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import Layout
from warmpath_agent.llama_cpp_launch import ServerLaunch, launch_differences, placement_arguments
from warmpath_agent.llama_cpp_process_driver import PROBE_PATH, LlamaCppProcessDriver
from warmpath_agent.processes import (
    is_stopped,
    process_command,
    process_start_time,
    signal_process,
)
from warmpath_agent.server_probe import HttpServerProbe
from warmpath_cli.mesh import free_port
from warmpath_common.config import ModelSpec, ProcessDriverSettings, Runtime

GPU = GpuReading(
    index=0,
    uuid="SIM-00000000-0000-0000-0000-000000000000",
    name="Simulated GPU",
    memory_total_bytes=8 << 30,
    memory_used_bytes=0,
    memory_free_bytes=8 << 30,
    simulated=True,
)

FAKE_SERVER = """
import argparse, json, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--model_alias")
parser.add_argument("--host")
parser.add_argument("--port", type=int)
parser.add_argument("--fake_id")
parser.add_argument("--fake_mute", action="store_true")
args, _ = parser.parse_known_args()
if args.fake_mute:
    while True:
        time.sleep(60)


class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": args.fake_id or args.model_alias}]})
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_):
        pass


ThreadingHTTPServer((args.host, args.port), Models).serve_forever()
"""


class Fixture:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.script = root / "fake_llama_server.py"
        self.script.write_text(FAKE_SERVER)
        self.weights = root / "model.gguf"
        self.weights.write_bytes(b"GGUF")
        low = free_port()
        self.settings = ProcessDriverSettings(
            port_range=(low, low + 20),
            startup_timeout_seconds=10,
            log_dir=root / "logs",
        )
        self.sleepers: list[subprocess.Popen[bytes]] = []

    def spec(self, name: str, weights: Path | None = None, **fields: object) -> ModelSpec:
        return ModelSpec.model_validate(
            {
                "name": name,
                "backend": "llama_cpp",
                "source": {"path": str(weights or self.weights)},
                "memory": "1MiB",
                **fields,
            }
        )

    def driver(self, client: httpx.AsyncClient, **changes: object) -> LlamaCppProcessDriver:
        settings = self.settings.model_copy(update=changes) if changes else self.settings
        command = (sys.executable, str(self.script))
        return LlamaCppProcessDriver(settings, client, server_command=command, poll_seconds=0.1)

    @property
    def state_dir(self) -> Path:
        state_dir = self.settings.effective_state_dir
        assert state_dir is not None
        return state_dir

    def records(self) -> dict[str, ChildRecord]:
        found = {}
        for path in self.state_dir.glob("*.json") if self.state_dir.is_dir() else ():
            record = ChildRecord.from_json(path.read_text())
            found[record.model] = record
        return found

    def sleeper(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["sleep", "300"])
        self.sleepers.append(process)
        return process

    def kill_everything(self) -> None:
        for process in self.sleepers:
            process.kill()
            process.wait()
        for pid in _pids_running(str(self.script)):
            os.kill(pid, signal.SIGKILL)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if entry)


def _pids_running(needle: str) -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and needle in " ".join(process_command(int(entry)) or ())
    ]


@pytest.fixture
def fx(tmp_path: Path) -> Iterator[Fixture]:
    fixture = Fixture(tmp_path)
    try:
        yield fixture
    finally:
        fixture.kill_everything()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def gone(pid: int, start_time: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_start_time(pid) != start_time:
            return True
        await asyncio.sleep(0.05)
    return False


# -- pid and start time ------------------------------------------------------


def test_start_time_identifies_a_process_and_a_dead_one_has_none(fx: Fixture) -> None:
    process = fx.sleeper()
    started = process_start_time(process.pid)
    assert started is not None and started > 0
    assert process_start_time(process.pid) == started, "stable for one process"
    process.kill()
    time.sleep(0.2)
    assert process_start_time(process.pid) is None, "an unreaped zombie counts as gone"
    process.wait()
    assert process_start_time(process.pid) is None


def test_a_signal_never_reaches_a_process_with_another_start_time(fx: Fixture) -> None:
    process = fx.sleeper()
    started = process_start_time(process.pid)
    assert started is not None
    assert not signal_process(process.pid, started + 1, signal.SIGTERM)
    time.sleep(0.2)
    assert process.poll() is None, "a pid whose start time differs is someone else's"
    assert signal_process(process.pid, started, signal.SIGTERM)
    assert process.wait(5) == -signal.SIGTERM
    assert not signal_process(process.pid, started, signal.SIGTERM), "gone: nothing sent"


def test_records_round_trip_and_reject_anything_else() -> None:
    record = ChildRecord(
        "m", 1234, 99, ("python", "-m", "x"), 41000, "http://h:41000", "/w.gguf", "GPU-1",
        {"CUDA_VISIBLE_DEVICES": "GPU-1"}, False,
    )  # fmt: skip
    assert ChildRecord.from_json(record.to_json()) == record
    good = json.loads(record.to_json())
    older = {key: value for key, value in good.items() if key not in ("env", "gpu_simulated")}
    assert ChildRecord.from_json(json.dumps(older)) == replace(record, env=None, gpu_simulated=None)
    for broken in (
        {**good, "env": {"CUDA_VISIBLE_DEVICES": 0}},
        {**good, "env": ["CUDA_VISIBLE_DEVICES"]},
        {**good, "gpu_simulated": "no"},
        {**good, "version": 2},
        {**good, "pid": True},
        {**good, "pid": 1},
        {**good, "port": 70000},
        {**good, "start_time": "99"},
        {**good, "command": "python -m x"},
        {key: value for key, value in good.items() if key != "gpu_uuid"},
    ):
        with pytest.raises(
            ValueError, match=r"version|pid|port|start_time|command|gpu_uuid|env|gpu_simulated"
        ):
            ChildRecord.from_json(json.dumps(broken))
    with pytest.raises(ValueError, match="version 1"):
        ChildRecord.from_json("[]")


def test_record_files_keep_similar_model_names_apart(tmp_path: Path) -> None:
    assert record_path(tmp_path, "a:b") != record_path(tmp_path, "a_b")
    assert record_path(tmp_path, "../x").parent == tmp_path


def test_state_dir_defaults_under_the_log_dir_and_kept_servers_need_one(tmp_path: Path) -> None:
    assert ProcessDriverSettings().effective_state_dir is None
    assert ProcessDriverSettings(log_dir=tmp_path).effective_state_dir == tmp_path / "state"
    explicit = ProcessDriverSettings(log_dir=tmp_path, state_dir=tmp_path / "run")
    assert explicit.effective_state_dir == tmp_path / "run"
    with pytest.raises(ValueError, match="keep_running_on_exit needs state_dir"):
        ProcessDriverSettings(keep_running_on_exit=True)
    with pytest.raises(ValueError, match="state_dir must name a directory"):
        ProcessDriverSettings(state_dir=Path())


# -- the driver --------------------------------------------------------------


async def test_a_started_server_is_recorded_in_its_own_session_until_stopped(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    driver = fx.driver(client)
    running = await driver.start(fx.spec("model-a"), GPU)
    assert running.pid is not None
    record = fx.records()["model-a"]
    assert record.pid == running.pid
    assert record.start_time == process_start_time(running.pid)
    assert record.base_url == running.base_url
    assert running.base_url.endswith(f":{record.port}")
    assert record.model_file == str(fx.weights)
    assert record.gpu_uuid == GPU.uuid
    assert record.env == {"CUDA_VISIBLE_DEVICES": ""} and record.gpu_simulated
    assert _environ(running.pid)["CUDA_VISIBLE_DEVICES"] == ""
    assert record.is_running()
    assert os.getsid(running.pid) == running.pid, "a session of its own, not the agent's"
    await driver.stop(running)
    assert fx.records() == {}
    assert await gone(record.pid, record.start_time)


async def test_a_stopped_server_fails_its_probe_and_a_stop_kills_it_without_the_grace(
    fx: Fixture, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    driver = fx.driver(client)
    running = await driver.start(fx.spec("model-a"), GPU)
    assert running.pid is not None and running.probe_url.endswith(PROBE_PATH)
    probe = HttpServerProbe(client)
    assert await probe.probe(running, 10) is None, "any answer counts, a 404 too"
    pid = running.pid
    os.kill(pid, signal.SIGSTOP)
    try:

        async def stopped() -> bool:
            return is_stopped(pid)

        await eventually(stopped)  # the signal is delivered asynchronously
        assert await probe.probe(running, 0.5) == (
            f"no answer to GET {running.probe_url} within 0.5 s"
        )
        with caplog.at_level(logging.WARNING):
            await driver.stop(running)
        assert "did not stop within" not in caplog.text, "SIGKILL at once, not after SIGTERM"
        assert fx.records() == {}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


async def test_a_graceful_close_stops_servers_unless_told_to_keep_them(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    driver = fx.driver(client)
    await driver.start(fx.spec("model-a"), GPU)
    record = fx.records()["model-a"]
    await driver.close()
    assert fx.records() == {}
    assert await gone(record.pid, record.start_time)

    keeping = fx.driver(client, keep_running_on_exit=True)
    await keeping.start(fx.spec("model-a"), GPU)
    kept = fx.records()["model-a"]
    await keeping.close()
    assert kept.is_running() and fx.records() == {"model-a": kept}
    successor = fx.driver(client, keep_running_on_exit=True)
    found = await successor.adopt({"model-a": fx.spec("model-a")})
    assert [(r.model, r.pid) for r, _ in found] == [("model-a", kept.pid)]


async def test_a_new_driver_adopts_a_crashed_agents_server_and_watches_it(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    first = fx.driver(client)
    started = await first.start(fx.spec("model-a"), GPU)
    # The agent "crashes": nothing is closed; the server runs on.
    second = fx.driver(client)
    found = await second.adopt({"model-a": fx.spec("model-a")})
    assert found == [
        (
            RunningModel(
                model="model-a",
                base_url=started.base_url,
                served_model_id="model-a",
                pid=started.pid,
                runtime=Runtime.PROCESS,
                probe_url=started.probe_url,
            ),
            GPU.uuid,
        )
    ]
    adopted = found[0][0]
    watch = asyncio.create_task(second.wait_exited(adopted))
    await asyncio.sleep(0.3)
    assert not watch.done(), "still serving"
    assert started.pid is not None
    os.kill(started.pid, signal.SIGKILL)
    reason = await asyncio.wait_for(watch, 10)
    assert f"pid {started.pid}" in reason and "exited" in reason
    assert fx.records() == {}, "a dead server's record goes with it"


async def test_check_finds_an_adopted_server_dead_at_once_and_forgets_it(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    await fx.driver(client).start(fx.spec("model-a"), GPU)
    successor = fx.driver(client)
    [(adopted, _)] = await successor.adopt({"model-a": fx.spec("model-a")})
    assert await successor.check(adopted) is None, "still serving"
    assert adopted.pid is not None
    os.kill(adopted.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_start_time(adopted.pid) is not None:
        assert time.monotonic() < deadline, "the killed server never went"
        await asyncio.sleep(0.05)
    reason = await successor.check(adopted)
    assert reason is not None and f"pid {adopted.pid}" in reason
    assert fx.records() == {}, "a dead server's record goes with it"
    assert await successor.check(adopted) == "not running"


async def test_stopping_an_adopted_server_stops_it_and_says_so_to_its_watcher(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    await fx.driver(client).start(fx.spec("model-a"), GPU)
    record = fx.records()["model-a"]
    successor = fx.driver(client)
    [(adopted, _)] = await successor.adopt({"model-a": fx.spec("model-a")})
    watch = asyncio.create_task(successor.wait_exited(adopted))
    await asyncio.sleep(0.3)
    await successor.stop(adopted)
    assert await asyncio.wait_for(watch, 10) == "stopped by Warmpath"
    assert await gone(record.pid, record.start_time)
    assert fx.records() == {}


async def test_adopted_ports_are_not_handed_out_again(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    low = fx.settings.port_range[0]
    narrow = {"port_range": (low, low + 1)}
    started = await fx.driver(client, **narrow).start(fx.spec("model-a"), GPU)
    successor = fx.driver(client, **narrow)
    [(adopted, _)] = await successor.adopt({"model-a": fx.spec("model-a")})
    second = await successor.start(fx.spec("model-b"), GPU)
    assert second.base_url != started.base_url
    assert adopted.base_url == started.base_url
    await successor.close()


async def test_records_of_gone_or_reused_pids_are_dropped_and_nothing_is_signalled(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    await fx.driver(client).start(fx.spec("model-a"), GPU)
    real = fx.records()["model-a"]
    sleeper = fx.sleeper()
    sleeper_start = process_start_time(sleeper.pid)
    assert sleeper_start is not None
    dead = fx.sleeper()
    dead_start = process_start_time(dead.pid)
    assert dead_start is not None
    dead.kill()
    dead.wait()
    # The pid of a process that has gone, and a live pid that started at
    # another time or runs another command: the last two stand for a reused pid.
    write_record(fx.state_dir, replace(real, model="gone", pid=dead.pid, start_time=dead_start))
    write_record(
        fx.state_dir,
        replace(real, model="reused", pid=sleeper.pid, start_time=sleeper_start + 1),
    )
    write_record(
        fx.state_dir,
        replace(real, model="other-command", pid=sleeper.pid, start_time=sleeper_start),
    )
    (fx.state_dir / "garbage.json").write_text("{not json")
    specs = {name: fx.spec(name) for name in ("model-a", "gone", "reused", "other-command")}
    found = await fx.driver(client).adopt(specs)
    assert [running.model for running, _ in found] == ["model-a"]
    assert set(fx.records()) == {"model-a"}
    assert not (fx.state_dir / "garbage.json").exists()
    time.sleep(0.2)
    assert sleeper.poll() is None, "a process that is not ours is never signalled"


@pytest.mark.parametrize(
    ("extra_args", "served", "why"),
    [
        (("--fake_id", "someone-else"), True, "answers for another model"),
        ((), False, "no longer served here"),
        ((), True, "started from another model file"),
        (("--fake_mute",), True, "never answers"),
    ],
)
async def test_our_server_that_cannot_be_adopted_is_stopped(
    fx: Fixture,
    client: httpx.AsyncClient,
    extra_args: tuple[str, ...],
    served: bool,
    why: str,
) -> None:
    first = fx.driver(client, extra_args=extra_args, startup_timeout_seconds=1)
    other_weights = fx.root / "other.gguf"
    other_weights.write_bytes(b"GGUF")
    spec = fx.spec("model-a")
    if extra_args:
        # start() would refuse such a server: launch one as it would, record and all.
        with pytest.raises(Exception, match=r"serves|not ready"):
            await first.start(spec, GPU)
        assert fx.records() == {}, "a failed start leaves no record"
        port = free_port()
        launch = first.launch(spec, fx.weights, port, gpu_uuid=GPU.uuid, simulated=True)
        process = subprocess.Popen(
            launch.command, env={**os.environ, **launch.env}, start_new_session=True
        )
        fx.sleepers.append(process)
        deadline = time.monotonic() + 10
        # Until the fork has exec'd the server, /proc shows the test's own command.
        while process_command(process.pid) != launch.command:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        start_time = process_start_time(process.pid)
        assert start_time is not None
        write_record(
            fx.state_dir,
            ChildRecord(
                "model-a", process.pid, start_time, launch.command, port,
                f"http://127.0.0.1:{port}", str(fx.weights), GPU.uuid, launch.env, True,
            ),
        )  # fmt: skip
    else:
        await first.start(spec, GPU)
    record = fx.records()["model-a"]
    if why == "started from another model file":
        spec = fx.spec("model-a", weights=other_weights)
    specs = {"model-a": spec} if served else {}
    # Launched as this driver would launch it: only `why` stands against adoption.
    successor = fx.driver(client, extra_args=extra_args, startup_timeout_seconds=1)
    found = await successor.adopt(specs)
    assert found == [], why
    assert fx.records() == {}
    assert await gone(record.pid, record.start_time), f"stopped: it {why}"


# -- a launch that no longer matches the config --------------------------------


@pytest.mark.parametrize(
    ("spec_fields", "driver_changes", "logged"),
    [
        ({"context_length": 4096}, {}, "--n_ctx 2048 -> 4096"),
        ({"chat_format": "chatml"}, {}, "--chat_format (unset) -> chatml"),
        ({}, {"extra_args": ("--n_threads", "2")}, "--n_threads differs"),
        ({}, {"bind_host": "127.0.0.2"}, "--host 127.0.0.1 -> 127.0.0.2"),
    ],
)
async def test_a_server_launched_with_other_settings_is_stopped_not_adopted(
    fx: Fixture,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    spec_fields: dict[str, object],
    driver_changes: dict[str, object],
    logged: str,
) -> None:
    await fx.driver(client).start(fx.spec("model-a"), GPU)
    record = fx.records()["model-a"]
    # The operator edits the config while the agent is down.
    successor = fx.driver(client, **driver_changes)
    with caplog.at_level(logging.WARNING, logger="warmpath_agent.llama_cpp_process_driver"):
        found = await successor.adopt({"model-a": fx.spec("model-a", **spec_fields)})
    assert found == []
    assert await gone(record.pid, record.start_time), "the stale server is stopped"
    assert fx.records() == {}, "its record is dropped: the model loads afresh on demand"
    [line] = [r.getMessage() for r in caplog.records if "not adopting" in r.getMessage()]
    assert logged in line


async def test_a_config_change_that_leaves_the_launch_alone_still_adopts(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    narrow = {"port_range": (fx.settings.port_range[0] + 5, fx.settings.port_range[1])}
    await fx.driver(client).start(fx.spec("model-a"), GPU)
    record = fx.records()["model-a"]
    # Neither memory nor keep-alive reaches the server, and the port is the one
    # it has, even outside today's range.
    changed = fx.spec("model-a", memory="2MiB", keep_alive_seconds=5)
    found = await fx.driver(client, **narrow, advertise_host="model-host.example").adopt(
        {"model-a": changed}
    )
    assert [(r.model, r.pid) for r, _ in found] == [("model-a", record.pid)]
    assert fx.records() == {"model-a": record}
    ((running, _),) = found
    assert running.base_url == f"http://model-host.example:{record.port}", (
        "peers are told today's address"
    )


async def test_a_record_without_its_launch_environment_is_not_adopted(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    await fx.driver(client).start(fx.spec("model-a"), GPU)
    record = fx.records()["model-a"]
    write_record(fx.state_dir, replace(record, env=None, gpu_simulated=None))
    assert await fx.driver(client).adopt({"model-a": fx.spec("model-a")}) == []
    assert await gone(record.pid, record.start_time)
    assert fx.records() == {}


def test_launch_differences_name_the_setting_but_never_an_extra_arguments_value() -> None:
    program = ("python", "-m", "llama_cpp.server")
    base = (*program, "--model", "/m.gguf", "--n_ctx", "2048", "--n_gpu_layers", "0")
    env = {"CUDA_VISIBLE_DEVICES": ""}

    def launch(*args: str, program: tuple[str, ...] = program, **env_: str) -> ServerLaunch:
        return ServerLaunch((*program, *base[3:], *args), env_ or env)

    assert launch_differences(launch("--api_key", "a"), launch("--api_key", "a"), 3) == []
    assert launch_differences(launch("--api_key", "old"), launch("--api_key", "new"), 3) == [
        "--api_key differs (an extra argument: values not logged)"
    ]
    assert launch_differences(launch("secret"), launch(), 3) == [
        "the extra arguments differ (values not logged)"
    ]
    assert launch_differences(launch("--a", "--b"), launch("--b", "--a"), 3) == [
        "the extra arguments are in another order"
    ]
    assert launch_differences(
        launch(CUDA_VISIBLE_DEVICES=""), launch(CUDA_VISIBLE_DEVICES="GPU-1"), 3
    ) == ["CUDA_VISIBLE_DEVICES '' -> 'GPU-1'"]
    assert launch_differences(launch(program=("py3", "-m", "x")), launch(), 3) == [
        "server program py3 -m x -> python -m llama_cpp.server"
    ]


# -- gangs and partial offload -------------------------------------------------


def test_placement_arguments_for_a_split_and_an_offload() -> None:
    second = replace(GPU, index=1, uuid="SIM-1")
    split = GpuPlacement((GPU, second), Layout.LAYER_SPLIT, (0.6, 0.4))
    assert placement_arguments(split, simulated=False) == (
        "--n_gpu_layers", "-1", "--split_mode", "1", "--tensor_split", "0.6000", "0.4000",
    )  # fmt: skip
    offload = GpuPlacement((GPU,), Layout.OFFLOAD, gpu_layers=7, total_layers=18)
    assert placement_arguments(offload, simulated=True) == ("--n_gpu_layers", "7")
    assert placement_arguments(GpuPlacement.one(GPU), simulated=True) == ("--n_gpu_layers", "0")


async def test_a_gang_server_gets_every_gpu_and_is_adopted_with_its_gpu_list(
    fx: Fixture, client: httpx.AsyncClient
) -> None:
    real = [replace(GPU, index=i, uuid=f"GPU-{i}", simulated=False) for i in (0, 1)]
    placement = GpuPlacement(tuple(real), Layout.OFFLOAD, (0.5, 0.5), gpu_layers=6)
    driver = fx.driver(client)
    running = await driver.start(fx.spec("model-a"), real[0], placement)
    assert running.pid is not None
    assert _environ(running.pid)["CUDA_VISIBLE_DEVICES"] == "GPU-0,GPU-1"
    command = process_command(running.pid) or ()
    assert command[command.index("--n_gpu_layers") + 1] == "6"
    assert "--tensor_split" in command
    record = fx.records()["model-a"]
    assert record.gpu_uuid == "GPU-0,GPU-1"
    successor = fx.driver(client)
    found = await successor.adopt({"model-a": fx.spec("model-a")})
    assert [(r.model, uuids) for r, uuids in found] == [("model-a", "GPU-0,GPU-1")]
    await successor.stop(found[0][0])
