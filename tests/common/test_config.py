from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import GEMMA, config_text
from warmpath_common.config import ConfigError, load_config, parse_config, with_overrides


def model(name: str, **extra: object) -> dict[str, object]:
    return {**GEMMA, "name": name, "aliases": [], **extra}


def test_embedded_default_is_valid_and_simulated() -> None:
    config = load_config(None)
    assert [m.name for m in config.models] == ["gemma3-270m"]
    assert config.agent.inventory.simulated
    assert {c.name: c.model for c in config.router.auto.classes} == dict.fromkeys(
        ("fast", "code", "heavy"), "gemma3-270m"
    )


def test_fallback_cycle_is_reported_with_its_path() -> None:
    text = config_text()

    document = yaml.safe_load(text)
    document["models"] = [
        model("a", fallbacks=["b"]),
        model("b", fallbacks=["c"]),
        model("c", fallbacks=["a"]),
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(document), "test.yaml")
    assert "fallback cycle: a -> b -> c -> a" in str(caught.value)
    assert "test.yaml" in str(caught.value)


def test_every_problem_is_listed_at_once() -> None:

    document = {
        "models": [
            model("a", aliases=["x"], fallbacks=["missing"]),
            model("b", aliases=["x"]),
        ],
        "router": {"auto": {"default_model": "nope"}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(document), "test.yaml")
    message = str(caught.value)
    assert "fallback 'missing' is not a registered model name" in message
    assert "name 'x' is used by both a and b" in message
    assert "router.auto.default_model 'nope'" in message


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"router": {"listen": "localhost"}}, "router.listen"),
        ({"agent": {"inventory": {"simulated": True}}}, "agent.inventory"),
        ({"adapter": {"idle_timeout_seconds": -1}}, "adapter.idle_timeout_seconds"),
        ({"router": {"hosts": [{"name": "h", "agent": "a:1"}]}}, "router.hosts.0.adapter"),
        ({"router": {"keepalive": {"time_seconds": 1}}}, "router.keepalive.time_seconds: 1 s"),
        ({"router": {"keepalive": {"timeout_seconds": 0}}}, "router.keepalive.timeout_seconds"),
        (
            {"router": {"first_token_timeout": {"floor_seconds": 9, "ceiling_seconds": 3}}},
            "router.first_token_timeout: floor_seconds 9 must be below ceiling_seconds 3",
        ),
        (
            {"router": {"first_token_timeout": {"multiplier": 0.5}}},
            "router.first_token_timeout.multiplier",
        ),
        ({"router": {"heartbeat_timeout_seconds": 6}}, "router.heartbeat_timeout_seconds 6"),
    ],
)
def test_errors_name_the_bad_field(section: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(**section), "warmpath.yaml")
    assert expected in str(caught.value)


def test_a_host_adapter_is_an_address_or_in_process() -> None:
    hosts = [{"name": "h", "agent": "127.0.0.1:1", "adapter": "inprocess"}]
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(router={"hosts": hosts}), "warmpath.yaml")
    assert "router.hosts.0.adapter" in str(caught.value)
    assert "neither host:port (e.g. 127.0.0.1:50053) nor 'in-process'" in str(caught.value)
    hosts[0]["adapter"] = "in-process"
    (host,) = parse_config(config_text(router={"hosts": hosts}), "warmpath.yaml").router.hosts
    assert host.adapter_in_process


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"router\.lisen"):
        parse_config(config_text(router={"lisen": "127.0.0.1:1"}), "warmpath.yaml")


def test_model_source_needs_exactly_one_kind() -> None:

    document = {"models": [model("a", source={"path": "/x.gguf", "served_id": "a"})]}
    with pytest.raises(ConfigError, match="exactly one of path, python_package, served_id"):
        parse_config(yaml.safe_dump(document), "warmpath.yaml")


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_overrides_are_validated() -> None:
    settings = load_config(None).router
    assert with_overrides(settings, listen="127.0.0.1:6000").listen == "127.0.0.1:6000"
    assert with_overrides(settings, listen=None) is settings
    with pytest.raises(ConfigError, match="listen"):
        with_overrides(settings, listen="nonsense")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"runtime": "ollama"}, "runtime ollama needs backend: ollama"),
        (
            {
                "backend": "ollama",
                "source": {"served_id": "x"},
                "memory": "1GiB",
                "runtime": "process",
            },
            "runtime process runs llama.cpp",
        ),
        ({"backend": "ollama", "source": {"served_id": "x"}, "memory": None}, "memory is required"),
    ],
)
def test_runtime_must_fit_backend_and_source(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(yaml.safe_dump({"models": [model("m", **extra)]}), "warmpath.yaml")


def test_runtime_defaults_follow_the_backend() -> None:
    config = parse_config(
        yaml.safe_dump(
            {
                "models": [
                    model("a"),
                    model("b", backend="ollama", source={"served_id": "b"}, memory="1GiB"),
                ]
            }
        ),
        "warmpath.yaml",
    )
    assert [m.effective_runtime.value for m in config.models] == ["process", "ollama"]


def test_auto_classes_are_checked() -> None:
    auto = {
        "classes": [
            {"name": "fast", "model": "gemma3-270m", "escalate_to": "code"},
            {"name": "code", "model": "nope", "escalate_to": "fast"},
            {"name": "heavy", "model": "gemma3-270m", "escalate_to": "huge"},
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(router={"auto": auto}), "warmpath.yaml")
    message = str(caught.value)
    assert "router.auto.classes.1 (code): model 'nope' is not a registered model name" in message
    assert "escalation cycle: fast -> code -> fast" in message
    assert "class 'heavy' escalates to unknown class 'huge'" in message


def test_liveness_settings_say_what_would_be_accepted() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(router={"keepalive": {"time_seconds": 1}}), "w.yaml")
    assert "more aggressive than Warmpath servers accept (at least 5 s" in str(caught.value)
    document = yaml.safe_load(config_text())
    document["models"][0]["first_token_timeout"] = {"floor_seconds": 5, "ceiling_seconds": 5}
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(document), "w.yaml")
    assert "models.0.first_token_timeout" in str(caught.value)
    assert "floor_seconds 5 must be below ceiling_seconds 5" in str(caught.value)
