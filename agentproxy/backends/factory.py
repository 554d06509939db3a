"""Pick the backend the settings ask for."""

from __future__ import annotations

from ..settings import Settings
from .base import Backend


def make_backend(settings: Settings) -> Backend:
    """The k8s backend when ``k8s_mode.enabled``, the local one otherwise (not started yet)."""
    if settings.k8s_mode.enabled:
        from .k8s.backend import K8sBackend

        return K8sBackend(settings)
    from .local.backend import LocalBackend

    return LocalBackend(settings)
