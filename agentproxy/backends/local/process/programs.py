"""Where an agent's programs are found and what environment they get."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

from ....agentprograms import cached_program


def executable_search_path(path: str | None = None) -> str:
    """The directories programs are looked up in: the one of the running Python first
    (so that ``python3 -m ...`` runs inside the proxy's own environment, venv or not),
    then ``$PATH``."""
    own = os.path.dirname(sys.executable)
    rest = os.environ.get("PATH", os.defpath) if path is None else path
    return os.pathsep.join(p for p in (own, rest) if p)


def find_executable(name: str, search_path: str | None = None) -> str | None:
    """The absolute path of an executable: ``name`` itself when it holds a ``/`` (after
    ``~`` expansion), else the first match on :func:`executable_search_path`, else the
    user-level cache's copy of an agent program agentproxy installs (``claude``)."""
    if not name:
        return None
    if os.sep in name:
        candidate = os.path.abspath(os.path.expanduser(name))
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    found = shutil.which(name, path=executable_search_path(search_path))
    if found:
        return os.path.abspath(found)
    # An agent program agentproxy installs (`agentproxy install-agents`), as agentapi itself.
    return cached_program(name)


def agent_environment(spec_env: Mapping[str, str], extra: Mapping[str, str] | None = None,
                      base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an agentapi process: the proxy's own, without ``AGENTAPI_*``
    (agentapi reads its flags from those and would be reconfigured by them), plus
    ``extra`` and then the spec's variables."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AGENTAPI_")}
    env.update(extra or {})
    env.update(dict(spec_env))
    return env
