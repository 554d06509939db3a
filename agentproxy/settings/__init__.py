"""Settings: a typed schema merged from defaults, a file, the environment and ``--set``."""

from .errors import SettingsError, Source
from .fields import CONFIG_ENV, ENV_VARS, LEAVES
from .load import LoadedSettings, load_settings
from .schema import AGENT_PORT, Settings

__all__ = [
    "AGENT_PORT", "CONFIG_ENV", "ENV_VARS", "LEAVES", "LoadedSettings", "Settings",
    "SettingsError", "Source", "load_settings",
]
