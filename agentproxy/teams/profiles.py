"""Which profile a create uses, and the settings an agent of that profile is made with.

A profile is an overlay of the settings: its agent type becomes the default type, its resources
the configured requests and limits (a request may still lower or raise them within them), its
image the agents' image. Its environment goes under the request's (the request wins), its
credentials are filled in when the agent starts (see :mod:`.credentials`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..settings import Settings
from .config import Profile, Teams


class ProfileRefused(ValueError):
    """A create names a profile that does not exist (``status`` 422) or that its caller may not
    use (403); the message names the profile."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def allowed_profiles(teams: Teams, groups: frozenset[str], admin: bool) -> list[Profile]:
    """The profiles a caller in ``groups`` may use, by name."""
    return [p for _, p in sorted(teams.profiles.items()) if p.allows(groups, admin)]


def choose_profile(teams: Teams, name: str | None, groups: frozenset[str], admin: bool) -> Profile | None:
    """The profile of a create naming ``name`` (``teams.default_profile`` when None; None when
    neither is set), or :class:`ProfileRefused`."""
    if name is None:
        name = teams.default_profile
        if name is None:
            return None
    profile = teams.profiles.get(name)
    if profile is None:
        known = ", ".join(p.name for p in allowed_profiles(teams, groups, admin)) or "none"
        raise ProfileRefused(422, f"profile: there is no profile {name!r}; profiles you may use: {known}")
    if not profile.allows(groups, admin):
        raise ProfileRefused(403, f"profile: profile {name!r} is not allowed for your groups "
                             f"(it is for {', '.join(sorted(profile.groups or ()))})")
    return profile


def profile_settings(settings: Settings, profile: Profile | None) -> Settings:
    """``settings`` as an agent of ``profile`` sees them (unchanged without a profile)."""
    if profile is None:
        return settings
    k8s: Any = settings.k8s_mode
    resources = dataclasses.replace(k8s.resources, **dict(profile.resources))
    k8s = dataclasses.replace(k8s, resources=resources, image=profile.image or k8s.image)
    agents: Any = settings.agents
    if profile.agent is not None:
        agents = dataclasses.replace(agents, default_type=profile.agent)
    if profile.idle_timeout is not None:
        agents = dataclasses.replace(agents, idle_timeout=profile.idle_timeout)
    return dataclasses.replace(settings, k8s_mode=k8s, agents=agents)
