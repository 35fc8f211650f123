"""Static checks of the deployment files: compose.yaml, the Dockerfile, deploy/k8s.

No Docker engine or cluster needed; the compose test (test_compose_up.py)
brings the cpu profile up for real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from warmpath_common.config import WarmpathConfig, parse_config

REPO = Path(__file__).resolve().parents[2]
MESH = ("router", "gpu-agent", "backend-adapter")
ROUTER_PORT = 50051
# Margin between a service's own shutdown grace and the SIGKILL that follows.
EXIT_MARGIN_SECONDS = 3


def _interpolate(text: str) -> str:
    """Compose's ${VAR:-default} / ${VAR-default} with nothing set: the defaults."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, f"cannot read duration {duration!r}"
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(_interpolate((REPO / "compose.yaml").read_text()))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _profile(services: dict[str, dict[str, Any]], profile: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if profile in s.get("profiles", [])}


def _mounted_config(service: dict[str, Any]) -> WarmpathConfig:
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if target == service["environment"]["WARMPATH_CONFIG"]:
            path = REPO / source
            return parse_config(path.read_text(), str(path))
    raise AssertionError("no config file mounted at WARMPATH_CONFIG")


# ---------------------------------------------------------------- compose.yaml


def test_compose_parses_with_the_mesh_and_jaeger_in_the_cpu_profile(services):
    assert set(MESH) | {"jaeger"} <= set(_profile(services, "cpu"))


def test_every_compose_service_has_a_healthcheck(services):
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert not service["healthcheck"].get("disable"), name


def test_warmpath_healthchecks_use_the_grpc_health_protocol(services):
    for name, service in services.items():
        if "warmpath" in service["image"]:
            assert service["healthcheck"]["test"][:4] == [
                "CMD", "python", "-m", "warmpath_cli.healthcheck"
            ], name  # fmt: skip


# NVML names GPU processes by host pid only, so the agent that measures model
# servers on real GPUs shares the host's PID namespace; nothing else does.
HOST_PID_COMPOSE_SERVICES = {"gpu-agent-cuda"}
HOST_PID_K8S_WORKLOADS = {"warmpath-gpu-host"}


def test_no_compose_service_is_privileged_or_shares_the_host(services):
    for name, service in services.items():
        assert not service.get("privileged"), name
        assert service.get("network_mode") != "host", name
        assert (service.get("pid") == "host") == (name in HOST_PID_COMPOSE_SERVICES), name
        assert "cap_add" not in service, name
        for volume in service.get("volumes", []):
            assert "docker.sock" not in volume, f"{name} mounts the Docker socket"


def test_only_the_router_publishes_and_only_on_loopback(services):
    for name, service in services.items():
        ports = service.get("ports", [])
        if not name.startswith("router"):
            assert not ports, f"{name} publishes {ports}"
            continue
        assert ports, f"{name} publishes nothing"
        for port in ports:
            host_ip, _host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", port
            assert container_port == str(ROUTER_PORT), port


def test_depends_on_waits_for_healthy_services_in_the_same_profile(services):
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, target)
            assert "healthcheck" in services[target], target
            # A dependency outside the profile breaks `--profile X up`.
            assert set(service["profiles"]) <= set(services[target]["profiles"]), (name, target)


def test_router_waits_for_its_agent_and_adapter(services):
    for name in ("router", "router-gpu"):
        assert len(services[name]["depends_on"]) == 2, name


def test_stop_grace_period_covers_each_services_shutdown_grace(services):
    for name, service in services.items():
        if "warmpath" not in service["image"]:
            continue
        config = _mounted_config(service)
        grace = {
            "router": config.router.shutdown_grace_seconds,
            "gpu-agent": config.agent.shutdown_grace_seconds,
            "backend-adapter": config.adapter.shutdown_grace_seconds,
        }[service["build"]["target"]]
        assert _seconds(service["stop_grace_period"]) >= grace + EXIT_MARGIN_SECONDS, name


def test_compose_configs_address_services_by_their_compose_names(services):
    for profile in ("cpu", "gpu"):
        members = _profile(services, profile)
        router = next(s for n, s in members.items() if n.startswith("router"))
        config = _mounted_config(router)
        (host,) = config.router.hosts
        agent_name, adapter_name = host.agent.split(":")[0], host.adapter.split(":")[0]
        assert agent_name in members, (profile, host.agent)
        assert adapter_name in members, (profile, host.adapter)
        agent = _mounted_config(members[agent_name]).agent
        assert agent.host == host.name, profile
        assert agent.listen.startswith("0.0.0.0:")
        # Model servers run in the agent's container, reached by its name.
        assert agent.process.bind_host == "0.0.0.0", profile
        assert agent.process.advertise_host == agent_name, profile


def test_gpu_profile_agent_drives_the_ollama_service(services):
    agent = _mounted_config(services["gpu-agent-cuda"]).agent
    assert agent.ollama.url == "http://ollama:11434"
    assert "11434" not in str(services["ollama"].get("ports", []))


def test_cpu_profile_simulates_its_gpu_and_gpu_profile_reads_nvml(services):
    assert _mounted_config(services["gpu-agent"]).agent.inventory.simulated
    assert not _mounted_config(services["gpu-agent-cuda"]).agent.inventory.simulated


def test_gpu_profile_reserves_nvidia_devices(services):
    gpu_agents = [s for s in _profile(services, "gpu").values() if "gpu-agent" in s["image"]]
    assert gpu_agents
    for service in [*gpu_agents, services["ollama"]]:
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    for service in _profile(services, "cpu").values():
        assert "deploy" not in service, "the cpu profile must run without a GPU"


def test_compose_build_targets_exist_in_the_dockerfile(services):
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", _dockerfile(), re.MULTILINE))
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["target"] in stages, name


# ------------------------------------------------------------------ Dockerfile


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _stages() -> dict[str, list[str]]:
    """Instruction lines (continuations joined) per stage name."""
    text = re.sub(r"\\\n", " ", _dockerfile())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM \S+ AS (\S+)$", line)
        if match:
            current = stages.setdefault(match.group(1), [])
        current.append(line)
    return stages


def _user(stages: dict[str, list[str]], stage: str) -> str | None:
    """The USER in effect at the end of `stage`, following FROM <stage> chains."""
    lines = stages[stage]
    for line in reversed(lines):
        if line.startswith("USER "):
            return line.split()[1]
    parent = lines[0].split()[1]
    return _user(stages, parent) if parent in stages else None


@pytest.mark.parametrize("target", MESH)
def test_images_run_as_a_non_root_user(target):
    user = _user(_stages(), target)
    assert user is not None, f"{target} runs as root (no USER)"
    assert user.split(":")[0] not in ("root", "0"), user


@pytest.mark.parametrize(
    ("target", "port"), [("router", 50051), ("gpu-agent", 50052), ("backend-adapter", 50053)]
)
def test_images_health_check_their_own_grpc_port(target, port):
    (healthcheck,) = [line for line in _stages()[target] if line.startswith("HEALTHCHECK")]
    assert f'"warmpath_cli.healthcheck", "127.0.0.1:{port}"' in healthcheck


def test_dockerfile_takes_a_base_image_and_generates_stubs_at_build():
    text = _dockerfile()
    assert text.index("ARG BASE_IMAGE=") < text.index("FROM ")
    assert all(
        line.startswith("FROM ${BASE_IMAGE}") or "AS" in line
        for line in re.findall(r"^FROM .*", text, re.M)
    )
    assert "scripts/gen_protos.sh" in text
    assert "PIP_NO_INDEX=1" in text, "builds must install from the wheelhouse only"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "!gen/" not in ignored, "stubs are generated in the image, not copied"


# --------------------------------------------------------------------- k8s


def _k8s() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((REPO / "deploy/k8s").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _k8s() if d["kind"] == kind]


def _workloads() -> list[dict[str, Any]]:
    return _of_kind("Deployment") + _of_kind("DaemonSet")


def _k8s_config() -> WarmpathConfig:
    (config_map,) = _of_kind("ConfigMap")
    return parse_config(config_map["data"]["warmpath.yaml"], "deploy/k8s/configmap.yaml")


def test_kustomization_lists_every_manifest():
    (kustomization,) = _of_kind("Kustomization")
    files = {p.name for p in (REPO / "deploy/k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_has_the_expected_kinds():
    kinds = {d["kind"] for d in _k8s()}
    assert {"Namespace", "ConfigMap", "Deployment", "DaemonSet", "Service"} <= kinds


def test_k8s_config_map_is_a_valid_warmpath_config():
    config = _k8s_config()
    assert len(config.router.hosts) >= 2
    assert config.agent.listen.startswith("0.0.0.0:")
    # The adapter shares the agent's pod: model servers stay on its loopback.
    assert config.agent.process.bind_host == "127.0.0.1"
    assert not config.agent.inventory.simulated


def test_router_deployment_has_several_replicas():
    (router,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == "warmpath-router"]
    assert router["spec"]["replicas"] >= 2


def test_gpu_host_daemonset_runs_agent_and_adapter_on_gpu_nodes():
    (daemonset,) = _of_kind("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"gpu-agent", "backend-adapter"}
    assert containers["gpu-agent"]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert "nvidia.com/gpu" not in containers["backend-adapter"]["resources"]["limits"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    host_env = {e["name"]: e for e in containers["gpu-agent"]["env"]}["WARMPATH_AGENT_HOST"]
    assert host_env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_workload_selectors_match_their_pod_labels():
    for workload in _workloads():
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]


def test_every_service_selects_a_workload_and_targets_its_ports():
    for service in _of_kind("Service"):
        selector = service["spec"]["selector"]
        matched = [
            w
            for w in _workloads()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, f"Service {service['metadata']['name']} selects no workload"
        port_names = {
            p["name"]
            for w in matched
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_pod_disruption_budget_selects_the_routers():
    (budget,) = _of_kind("PodDisruptionBudget")
    (router,) = _of_kind("Deployment")
    assert budget["spec"]["selector"] == router["spec"]["selector"]


def _containers():
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield workload, pod, container


def test_k8s_containers_have_resources_and_grpc_health_probes():
    for workload, _pod, container in _containers():
        where = f"{workload['metadata']['name']}/{container['name']}"
        assert {"requests", "limits"} <= set(container["resources"]), where
        ports = {p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] in ports, (where, probe)


def test_k8s_pods_run_as_non_root_without_privileges():
    for workload, pod, container in _containers():
        where = f"{workload['metadata']['name']}/{container['name']}"
        context = {**pod["securityContext"], **container.get("securityContext", {})}
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] != 0, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert not context.get("privileged"), where
        assert not pod.get("hostNetwork"), where
        shares_pids = workload["metadata"]["name"] in HOST_PID_K8S_WORKLOADS
        assert bool(pod.get("hostPID")) == shares_pids, where


def test_k8s_termination_grace_covers_the_shutdown_grace():
    config = _k8s_config()
    longest = max(
        config.router.shutdown_grace_seconds,
        config.agent.shutdown_grace_seconds,
        config.adapter.shutdown_grace_seconds,
    )
    for workload in _workloads():
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= longest + EXIT_MARGIN_SECONDS, workload["metadata"]["name"]


def test_k8s_images_match_the_dockerfile_targets():
    stages = set(_stages())
    for _workload, _pod, container in _containers():
        target = container["image"].split("/")[-1].removesuffix("-cuda")
        assert target in stages, container["image"]
