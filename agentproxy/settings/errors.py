"""Where a setting's value came from, and the error raised when it is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Source:
    """The origin of a setting's value: the default, a file, a variable or ``--set``."""

    kind: str  # "default", "file", "env" or "set"
    detail: str = ""

    def __str__(self) -> str:
        # A line break in a --set argument or a path must not split the one-line
        # error message or the `# from ...` comment of `agentproxy config`.
        detail = self.detail if self.detail.isprintable() else repr(self.detail)
        if self.kind == "default":
            return "default"
        if self.kind == "file":
            return f"config file {detail}"
        if self.kind == "env":
            return f"environment variable {detail}"
        return f"--set {detail}"


DEFAULT = Source("default")


class SettingsError(ValueError):
    """A setting is unknown or has a value that breaks a rule.

    ``str(error)`` is one line naming the key, the value, where it came from and
    the rule, e.g. ``k8s_mode.resources.cpu_limit='lots' (from environment
    variable AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT): must be a Kubernetes quantity ...``.
    """

    def __init__(self, key: str, rule: str, value: Any = None, source: Source | None = None,
                 *, show_value: bool = True) -> None:
        self.key = key
        self.rule = rule
        self.value = value
        self.source = source
        head = f"{key}={value!r}" if show_value else key
        origin = f" (from {source})" if source is not None else ""
        super().__init__(f"{head}{origin}: {rule}")
