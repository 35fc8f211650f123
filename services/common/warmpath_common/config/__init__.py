"""The Warmpath config file: one YAML document that every service reads.

The `models` section is the registry all services share; `router`,
`agent` and `adapter` configure one service each. Every field is
validated at start-up; an error names the file and the field (e.g.
`models.2.fallbacks`) and says what would be accepted.

Settings resolve in the order: command-line flag, environment variable,
config file, built-in default. Only `__main__` modules read the environment.

One module per section (models, router, agent, adapter, security), the checks
across sections in checks.py, reading the file in loading.py.
"""

from warmpath_common.config.adapter import AdapterSettings
from warmpath_common.config.agent import (
    AgentSettings,
    DockerSettings,
    Inventory,
    OllamaSettings,
    ProcessDriverSettings,
    ServerProbeSettings,
    SimulatedGpu,
    WarmTierSettings,
)
from warmpath_common.config.base import ConfigError, ModelName
from warmpath_common.config.checks import big_model_problems, registry_problems
from warmpath_common.config.document import WarmpathConfig
from warmpath_common.config.loading import (
    DEFAULT_CONFIG_RESOURCE,
    load_config,
    parse_config,
    with_overrides,
)
from warmpath_common.config.models import (
    AUTO_MODEL,
    BackendKindName,
    ContainerSpec,
    ModelSource,
    ModelSpec,
    OffloadPolicy,
    Runtime,
    placement_problems,
)
from warmpath_common.config.router import (
    IN_PROCESS_ADAPTER,
    AutoClass,
    AutoRouting,
    HostSpec,
    HttpSettings,
    RouterSettings,
)
from warmpath_common.config.security import CallerToken, SecuritySettings, TlsSettings

__all__ = [
    "AUTO_MODEL",
    "DEFAULT_CONFIG_RESOURCE",
    "IN_PROCESS_ADAPTER",
    "AdapterSettings",
    "AgentSettings",
    "AutoClass",
    "AutoRouting",
    "BackendKindName",
    "CallerToken",
    "ConfigError",
    "ContainerSpec",
    "DockerSettings",
    "HostSpec",
    "HttpSettings",
    "Inventory",
    "ModelName",
    "ModelSource",
    "ModelSpec",
    "OffloadPolicy",
    "OllamaSettings",
    "ProcessDriverSettings",
    "RouterSettings",
    "Runtime",
    "SecuritySettings",
    "ServerProbeSettings",
    "SimulatedGpu",
    "TlsSettings",
    "WarmTierSettings",
    "WarmpathConfig",
    "big_model_problems",
    "load_config",
    "parse_config",
    "placement_problems",
    "registry_problems",
    "with_overrides",
]
