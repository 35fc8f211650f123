"""The incident reports' hosts as placement scenarios: models bigger than one GPU.

Each scenario is a host named in issue 18 (its GPUs, models and sizes, from the
incident reports) with a plausible workload from what the report says people did,
run through placement_gangs.py (the agent's gang placement) against LRU, Ollama-style
keep_alive and the Belady-style reference. Figures not in the reports are marked
"assumed" in each scenario's notes: host RAM everywhere, the GPUs of the gpt-oss and
TDD pipeline hosts, load times other than the reports' (2 s + 0.9 s/GB for Ollama).

Every model of every scenario must be servable: the agent's start-up check
(capacity.capacity_problems) must pass for each host, and a run in which any request
is refused for want of a fitting GPU set (or of host RAM), or a model is never
served, raises NotServed.

    .venv/bin/python bench/placement.py --hosts-only [--seeds 5] [--hours 4]
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable, Sequence

from placement_gangs import (
    HostModel,
    HostOutcome,
    HostScenario,
    HostSimulation,
    host_policies,
    host_scenario,
    ollama,
)

from simulator import traces
from simulator.cluster import GB
from simulator.policies import LRU, WARMPATH
from simulator.report import median
from simulator.traces import Request
from warmpath_agent.capacity import capacity_problems
from warmpath_agent.eviction import GpuRoom
from warmpath_agent.gang import plan_gang
from warmpath_agent.layouts import GangPlan, describe

# This report's section: `bench/placement.py --hosts-only --out FILE` rewrites only it.
HOSTS_HEADING = "## Incident hosts"


def poisson(
    rng: random.Random, start: float, end: float, per_second: float, model: int
) -> list[Request]:
    requests, at = [], start + rng.expovariate(per_second)
    while at < end:
        requests.append(Request(at, model))
        at += rng.expovariate(per_second)
    return requests


def sessions(
    rng: random.Random,
    end: float,
    weights: Sequence[float],
    *,
    every: float,
    length: float,
    think: float,
) -> list[Request]:
    """traces.sessions, each on one model picked by `weights`."""
    return traces.sessions(
        rng,
        end,
        lambda now: rng.choices(range(len(weights)), weights)[0],
        every=every,
        length=length,
        think=think,
    )


def periodic(end: float, period: float, models: Iterable[int], spacing: float) -> list[Request]:
    """Every model once every `period` s, `spacing` s apart (a health check)."""
    models = list(models)
    return [
        Request(start + spacing * i, model)
        for start in _steps(period, end)
        for i, model in enumerate(models)
    ]


def _steps(step: float, end: float, start: float = 0.0) -> list[float]:
    return [start + step * i for i in range(math.ceil((end - start) / step))]


def rtx_5070_ti_trace(rng: random.Random, end: float) -> list[Request]:
    """Developers' sessions on the 33b coder (one every 10 min, 20 min long, a request
    every 30 s), the coordinator at 0.2 req/s, the other three now and then."""
    requests = sessions(rng, end, [1.0], every=600, length=1200, think=30)
    for model, rate in ((1, 0.2), (2, 1 / 40), (3, 1 / 60), (4, 1 / 180)):
        requests += poisson(rng, 0.0, end, rate, model)
    return requests


def rtx_5090_trace(rng: random.Random, end: float) -> list[Request]:
    """The router's three classes: simple queries to the fast model (0.2 req/s), code to
    the coder (0.05 req/s), complex ones to the 70b in bursts of 3 (every 10 min)."""
    requests = poisson(rng, 0.0, end, 0.2, 0) + poisson(rng, 0.0, end, 0.05, 1)
    for start in poisson(rng, 0.0, end, 1 / 600, 2):
        requests += [Request(start.at + 40.0 * i, 2) for i in range(3)]
    return requests


def gpt_oss_trace(rng: random.Random, end: float) -> list[Request]:
    """Users switching models in the web UI: a session every 3 min, 15 min long, a
    request every 30 s; 120b in 40% of them, 20b and the coder 25% each, mistral 10%."""
    return sessions(rng, end, [0.4, 0.25, 0.25, 0.1], every=180, length=900, think=30)


def tdd_pipeline_trace(rng: random.Random, end: float) -> list[Request]:
    """Each hour: 40 min of phase 1 (agents 1-10 on the coder, agent 11 on the fast
    model, a request a minute each), then 20 min of phase 2 (agents 13-15 on the
    quality model); and ccproxy's health check on all three every 30 s, as deployed."""
    requests = periodic(end, 30.0, (1, 0, 2), 1.0)
    for hour in _steps(3600, end):
        phase_two = min(end, hour + 2400)
        for _agent in range(10):
            requests += poisson(rng, hour, phase_two, 1 / 60, 0)
        requests += poisson(rng, hour, phase_two, 1 / 60, 1)
        for _agent in range(3):
            requests += poisson(rng, phase_two, min(end, hour + 3600), 1 / 60, 2)
    return requests


# Report 001's models: fast, code and heavy, with its response times.
RTX_5090_MODELS = (
    ollama("llama3.2:3b", 2.0, 28, 0.9),
    ollama("qwen3-coder-30b", 18.0, 48, 18.7),
    ollama("llama3.1:70b", 42.0, 80, 30.0),
)

SCENARIOS = (
    host_scenario(
        "RTX 5070 Ti host",
        "deepseek-coder:33b (18 GB) on one 16 GB GPU, beside four small models",
        "RTX 5070 Ti",
        (16.0,),
        64.0,
        (
            HostModel("deepseek-coder:33b", 18.0, 62, 98.0, 3.5),
            ollama("llama3.2:3b", 2.0, 28, 2.0),
            ollama("deepseek-coder:6.7b", 3.8, 32, 4.0),
            ollama("llama3.1:8b", 4.9, 32, 4.0),
            ollama("llava:7b", 4.7, 32, 4.0),
        ),
        rtx_5070_ti_trace,
        "Report 000: its GPU (16 GB), its models and the 98 s cold start and 3.5 s "
        "response of the 33b; host RAM (64 GB) assumed.",
    ),
    host_scenario(
        "RTX 5090 host",
        "llama3.1:70b (42 GB) on one 32 GB GPU, beside an 18 GB coder and a 2 GB fast model",
        "RTX 5090",
        (32.0,),
        128.0,
        RTX_5090_MODELS,
        rtx_5090_trace,
        "Report 001: its GPU, models, sizes and response times (0.9 s, 18.7 s, 30 s); "
        "host RAM (128 GB) assumed.",
    ),
    host_scenario(
        "RTX 5090 host, two GPUs (what if)",
        "the same models and workload with a second 32 GB GPU: the 70b split by layers",
        "RTX 5090",
        (32.0, 32.0),
        128.0,
        RTX_5090_MODELS,
        rtx_5090_trace,
        "Not in the report: report 001's host with the second GPU its 'next phase' plans "
        "(multi-GPU support), to show a layer split.",
    ),
    host_scenario(
        "gpt-oss host",
        "gpt-oss-120b (183 GB) tensor parallel over 4 GPUs, beside three vLLM models",
        "(GPU assumed)",
        (80.0, 80.0, 80.0, 80.0),
        256.0,
        (
            HostModel("gpt-oss-120b", 183.0, 0, 61.0, 5.0, tensor_parallel=4),
            HostModel("gpt-oss-20b", 40.0, 0, 15.0, 5.0),
            HostModel("deepseek-coder-33b-instruct", 43.0, 0, 20.0, 5.0),
            HostModel("mistral-7b-v0.1", 7.0, 0, 8.0, 5.0),
        ),
        gpt_oss_trace,
        "Report 003: its models, sizes and load times (61 s measured, the rest its "
        "estimates); the report names no GPU: 4 x 80 GB and 256 GB of host RAM assumed.",
    ),
    host_scenario(
        "TDD pipeline host",
        "two 32B models (20 GB and 35 GB) that cannot coexist, and a 7B, on 32 GB",
        "(GPU assumed)",
        (32.0,),
        64.0,
        (
            ollama("qwen2.5-coder:32b-instruct", 19.8, 64, 10.0),
            ollama("qwen-fast (7B)", 4.6, 28, 3.0),
            ollama("qwen-quality-128k (32B)", 34.8, 64, 10.0),
        ),
        tdd_pipeline_trace,
        "Report 002: its models, sizes, phases and 30 s health checks; its ~32 GB of "
        "memory taken as one 32 GB GPU, with 64 GB of host RAM assumed.",
    ),
)


class NotServed(AssertionError):
    """A scenario's model could not be served: the issue's requirement is broken."""


HostResults = dict[str, dict[str, list[HostOutcome]]]


def check_servable(scenario: HostScenario) -> None:
    """The agent's start-up check: every model fits somewhere on this host."""
    shapes = {m.name: (f"models.{i}", m.shape) for i, m in enumerate(scenario.models)}
    problems = list(capacity_problems(shapes, scenario.host(), int(scenario.host_ram_gb * GB)))
    if problems:
        raise NotServed(f"{scenario.name}: " + "; ".join(problems))


def run_hosts(
    seeds: int, hours: float | None = None, scenarios: Sequence[HostScenario] = SCENARIOS
) -> HostResults:
    results: HostResults = {}
    for scenario in scenarios:
        check_servable(scenario)
        by_policy = results.setdefault(scenario.name, {})
        for seed in range(seeds):
            trace = scenario.trace(seed, hours)
            asked = {r.model for r in trace}
            for policy in host_policies(trace):
                outcome = HostSimulation(scenario, policy).run(trace)
                if outcome.refused or outcome.served_models != asked:
                    never = sorted(scenario.models[m].name for m in asked - outcome.served_models)
                    raise NotServed(
                        f"{scenario.name}, {policy.name}, seed {seed}: {outcome.refused} "
                        f"requests refused ({outcome.refused_host_ram} for host RAM); never "
                        f"served: {', '.join(never) or 'none'}"
                    )
                by_policy.setdefault(policy.name, []).append(outcome)
    return results


def placements(scenario: HostScenario) -> list[str]:
    """Where each model goes on the empty host (plan_gang), in the agent's words."""
    empty = [GpuRoom(i, int(gb * GB), ()) for i, gb in enumerate(scenario.gpu_gb)]
    rows = []
    for model in scenario.models:
        plan = plan_gang(
            empty, model.shape, 0.0, 0.0, host_free_bytes=int(scenario.host_ram_gb * GB)
        )
        assert isinstance(plan, GangPlan)
        runtime = "Ollama / llama.cpp" if model.layers else "vLLM"
        rows.append(
            f"| {model.name} | {model.size_gb:g} | {runtime} | {model.load_seconds:.0f} "
            f"| {describe(plan.layout, plan.gpu_indexes, plan.layers_on_gpu, plan.total_layers)} |"
        )
    return rows


def hosts_table(
    results: HostResults, seeds: int, hours: float | None, command: str, seconds: float
) -> str:
    load = os.getloadavg()[0]
    lines = [
        "",
        f"{HOSTS_HEADING}: models bigger than one GPU (issue 18, item 7)",
        "",
        f"`{command}`: simulated, no GPU used (took {seconds:.0f} s on {os.cpu_count()} CPU "
        f"cores, load average {load:.1f}{': shared with other work' if load > 0.5 else ''}); "
        f"median over {seeds} seeds. Hosts, workloads and policies are described "
        "in bench/placement_hosts.py's docstring. Placement is the agent's shared code "
        '(gang.plan_gang with eviction.py). "Served offloaded" is the share of served '
        'requests answered by a model with layers in host RAM, "their slowdown" their mean '
        "expected time per token against the model on GPUs; such a request keeps its "
        'model busy for its service time times the expected slowdown. "Refused" counts '
        "requests refused for want of a fitting GPU set or host RAM: the harness raises if "
        "any is.",
    ]
    for scenario in SCENARIOS:
        by_policy = results.get(scenario.name)
        if by_policy is None:
            continue
        gpus = f"{len(scenario.gpu_gb)} x {scenario.gpu_gb[0]:g} GB {scenario.gpu_name}"
        lru = median(by_policy[LRU], lambda o: o.cold_loads)
        lru_load = median(by_policy[LRU], lambda o: o.load_seconds)
        requests = len(scenario.trace(0, hours))
        workload = " ".join((scenario.make_trace.__doc__ or "").split())
        lines += [
            "",
            f"### {scenario.name}: {scenario.summary}",
            "",
            f"{gpus}, {scenario.host_ram_gb:g} GB host RAM; {hours or scenario.hours:g} h "
            f"traces ({requests} requests at seed 0). {scenario.notes} Workload: {workload}",
            "",
            "| model | GB | runtime | load (s) | placed on the empty host |",
            "|---|---:|---|---:|---|",
            *placements(scenario),
            "",
            "| policy | cold loads | vs LRU | load-seconds | vs LRU | p99 wait (s) | failed "
            "| served offloaded | their slowdown | refused |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, outcomes in by_policy.items():
            cold = median(outcomes, lambda o: o.cold_loads)
            load = median(outcomes, lambda o: o.load_seconds)
            p99 = median(outcomes, lambda o: o.p99_wait)
            failed = median(outcomes, lambda o: o.timed_out + o.refused)
            share = median(outcomes, lambda o: o.offloaded_share)
            slowdown = median(outcomes, lambda o: o.mean_offloaded_slowdown)
            refused = sum(o.refused for o in outcomes)
            lines.append(
                f"| {name} | {cold:.0f} | {cold / max(lru, 1):.2f}x | {load:.0f} "
                f"| {load / max(lru_load, 1):.2f}x | {p99:.1f} | {failed:.0f} | {100 * share:.0f}% "
                f"| {slowdown:.1f}x | {refused} |"
            )
        lines += [
            "",
            f"Every model served: yes, all {len(scenario.models)} under every policy and seed, "
            "none refused.",
        ]
    return "\n".join(lines) + "\n" + hosts_verdict(results)


def hosts_verdict(results: HostResults) -> str:
    """The result in words, from the figures above (so that it cannot go stale)."""
    cold, slow = [], []
    for name, by_policy in results.items():
        ours, lru = by_policy[WARMPATH], by_policy[LRU]
        ratio = median(ours, lambda o: o.cold_loads) / max(median(lru, lambda o: o.cold_loads), 1)
        cold.append(f"{name} {ratio:.2f}x")
        if median(ours, lambda o: o.served_offloaded):
            slowdowns = [median(o, lambda o: o.mean_offloaded_slowdown) for o in (ours, lru)]
            slow.append(f"{name} {slowdowns[0]:.1f}x against {slowdowns[1]:.1f}x")
    return (
        "\n**Result.** Every model of every incident host is served under every policy. "
        f"Warmpath's cold loads against LRU's: {', '.join(cold)}. Where a model fits on no "
        "GPU, the baselines (Ollama's scheduler) unload every idle model before offloading "
        "it, so every order evicts the same models and they tie; the agent offloads it "
        "around the models already resident (no eviction would fit it on the GPU), which "
        "saves their reloads but puts more of its layers in host RAM: its offloaded "
        f"requests' expected slowdown per token: {'; '.join(slow) or 'none'} (warmpath "
        "against LRU).\n"
    )
