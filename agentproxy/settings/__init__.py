"""Settings: a typed schema merged from defaults, a file, the environment and ``--set``.

Modules: :mod:`.schema` (the typed schema; every setting is documented where it is
declared), :mod:`.fields` (the schema's leaves and how raw values become typed ones),
:mod:`.load` (merging the four layers, remembering where each value came from),
:mod:`.validate` (rules beyond types), :mod:`.errors` (sources, and the error naming the key,
the value, its source and the rule), :mod:`.show` (``agentproxy config``'s display).
"""

from .errors import SettingsError, Source
from .fields import CONFIG_ENV, ENV_VARS, LEAVES
from .load import LoadedSettings, load_settings
from .schema import AGENT_PORT, Settings

__all__ = [
    "AGENT_PORT", "CONFIG_ENV", "ENV_VARS", "LEAVES", "LoadedSettings", "Settings",
    "SettingsError", "Source", "load_settings",
]
