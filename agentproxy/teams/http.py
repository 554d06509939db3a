"""The team rules as the HTTP layer applies them: the spec of a create (its profile, its
sharing), and who may manage an agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..backends.agent_state import AgentState
from ..settings import Settings
from ..spec import AgentSpec, build_spec
from .config import Teams
from .profiles import ProfileRefused, choose_profile, profile_settings
from .quotas import QuotaExceeded, check, count, scopes


def _api_error(status: int, message: str, field: str) -> Exception:
    from ..api.errors import ApiError  # the HTTP layer's error, imported late: it imports the backends
    return ApiError(status, message, field=field)


def team_spec(teams: Teams, settings: Settings, principal: Any, session: str,
              fields: Mapping[str, Any]) -> AgentSpec:
    """The spec of a create by ``principal`` with the request's ``fields`` (``id``, ``agent``,
    ``env``, ``message``, ``resources``, ``profile``, ``share``): the profile's settings and
    environment under the request's, owned by the caller, shared with the group it names.

    An unknown profile is 422, a profile or group the caller may not use 403, each naming the field."""
    try:
        profile = choose_profile(teams, fields.get("profile"), principal.groups, principal.admin)
    except ProfileRefused as exc:
        raise _api_error(exc.status, str(exc), "profile") from None
    share = fields.get("share")
    if share is not None:
        check_share(teams, principal, share, "share")
    env = fields.get("env")
    if profile is not None and profile.env:
        env = {**profile.env, **(env if isinstance(env, Mapping) else {})}
    spec = build_spec(profile_settings(settings, profile), session, fields.get("id"), fields.get("agent"), env,
                      fields.get("message"), fields.get("resources"), owner=principal.name)
    if share is None and profile is None:
        return spec
    return dataclasses.replace(spec, group=share, profile=None if profile is None else profile.name)


def check_share(teams: Teams, principal: Any, group: str, field: str) -> None:
    """403 unless ``principal`` may share an agent of its own with ``group``: one of its groups
    (an admin: any group of the settings too)."""
    if group not in principal.groups and not (principal.admin and group in teams.members):
        raise _api_error(403, f"{field}: {group!r} is not one of your groups; an agent can be shared with a "
                              f"group of its owner ({', '.join(sorted(principal.groups)) or 'you have none'})",
                         field)


def check_manage(principal: Any, state: AgentState) -> None:
    """403 unless ``principal`` may delete ``state``'s agent (its owner, an admin)."""
    if not principal.can_manage(state):
        raise _api_error(403, f"agent {state.id!r} is shared with your group {state.spec.group!r}; only its "
                              "owner and admins may delete it", "agent")


class QuotaGate:
    """Lets a create or resume through only within the quotas (see :mod:`.quotas`).

    One lock around check and create, so that concurrent creates of this replica are counted
    one after the other; the creates under way are counted until the backend lists their agent.
    Across replicas (k8s mode), a create also reserves its place in the backend's quota ledger
    with a conditional write (:meth:`reserve` of ``backend.quota_ledger()``): of two replicas
    letting a create through at the same instant, one write fails, and that replica checks
    again with the other's create counted."""

    def __init__(self, teams: Teams, backend: Any) -> None:
        self.teams = teams
        self.backend = backend
        self.enabled = teams.quotas.any
        self._lock = asyncio.Lock()
        self._in_flight: dict[str, AgentSpec] = {}
        self._moved: dict[str, str] = {}
        """Creates under way that claimed a pool member: the member's id by the create's."""
        listeners = getattr(backend, "claim_listeners", None)
        if self.enabled and listeners is not None:
            listeners.append(self._claimed)

    async def _claimed(self, requested: str, agent_id: str) -> None:
        """A create let through as ``requested`` claimed the pool member ``agent_id``: it is that
        agent now, counted once. Under this replica's creates and in the quota ledger (every
        replica's) it is moved to the member's id, which the backend lists from now on."""
        spec = self._in_flight.pop(requested, None)
        if spec is not None:
            self._in_flight[agent_id] = dataclasses.replace(spec, id=agent_id)
            self._moved[requested] = agent_id
        ledger = self._ledger()
        if ledger is not None:
            await ledger.rename(requested, agent_id)

    def _ledger(self) -> Any:
        make = getattr(self.backend, "quota_ledger", None)
        return make() if callable(make) else None

    async def usage(self, principal: Any) -> list[dict[str, Any]]:
        """The caller's counts against each of its quotas (``GET /usage``)."""
        states = await self.backend.list()
        return [{"kind": scope.kind, "name": scope.name, "quota_setting": path, "quota": quota.to_dict(),
                 "usage": count(scope, states, self._in_flight.values()).to_dict()}
                for scope, quota, path in scopes(self.teams, principal.name, principal.groups)]

    @contextlib.asynccontextmanager
    async def admit(self, principal: Any, spec: AgentSpec, *, new_agent: bool, starts: bool) -> AsyncIterator[None]:
        """Hold the body of an ``async with`` (the create) only within the quotas; 429 naming the
        quota otherwise, before anything is made."""
        if not self.enabled or principal.admin:
            yield
            return
        async with self._gate(scopes(self.teams, principal.name, principal.groups), spec,
                              new_agent=new_agent, starts=starts):
            yield

    @contextlib.asynccontextmanager
    async def admit_resume(self, state: AgentState) -> AsyncIterator[None]:
        """Hold a resume of ``state``'s agent (asked for by anyone who may, or by a request to
        it) only within its owner's quotas and those of its owner's and shared groups."""
        owner = state.spec.owner
        if not self.enabled or owner is None or not state.suspended:
            yield
            return
        groups = self.teams.groups_of(owner) | ({state.spec.group} if state.spec.group else set())
        if self.teams.admin_group is not None and self.teams.admin_group in groups:
            yield  # an admin's agents have no quota
            return
        async with self._gate(scopes(self.teams, owner, groups), state.spec, new_agent=False, starts=True):
            yield

    @contextlib.asynccontextmanager
    async def _gate(self, scoped: list[Any], spec: AgentSpec, *, new_agent: bool, starts: bool) -> AsyncIterator[None]:
        ledger = self._ledger() if new_agent else None
        async with self._lock:
            states = await self.backend.list()
            try:
                check(scoped, states, list(self._in_flight.values()), new_agent=new_agent, starts=starts)
                if ledger is not None:
                    # The other replicas' creates of the last moments, and ours written with a
                    # condition: a write that lost a race is checked again with the winner's.
                    await ledger.reserve(spec, lambda reserved: check(
                        scoped, states, [*self._in_flight.values(), *reserved], new_agent=new_agent, starts=starts))
            except QuotaExceeded as exc:
                headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
                from ..api.errors import ApiError
                raise ApiError(429, str(exc), code="quota_exceeded", field=exc.path, headers=headers) from None
            if new_agent:
                self._in_flight[spec.id] = spec
        try:
            yield
        except BaseException:
            if ledger is not None:
                try:
                    await ledger.release(spec.id)  # nothing was made: its place is free again
                except Exception:  # noqa: BLE001 - the reservation expires by itself; the create's error counts
                    pass
            raise
        finally:
            self._in_flight.pop(spec.id, None)
            self._in_flight.pop(self._moved.pop(spec.id, ""), None)
