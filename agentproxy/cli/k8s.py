"""``agentproxy apply | diff | delete | status``: one agent in k8s mode, kubectl-style.

These commands talk to the cluster directly (through the same k8s backend the
server uses, whose methods do the work: ``create``, ``dry_run``, ``diff``,
``delete``, ``get``), so an operator can manage an agent without a running proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ..backends.base import AgentState, AgentStatus, BackendError
from ..settings import Settings
from .parser import agent_options, load, settings_options, spec_of

if TYPE_CHECKING:
    from ..backends.k8s.backend import K8sBackend

EXIT_DIFF = 1
EXIT_ERROR = 2


def register(sub: Any) -> None:
    """Add ``apply``, ``diff``, ``delete`` and ``status`` to the top-level subparsers."""
    p = sub.add_parser("apply", help="create an agent in the cluster (server-side apply)")
    agent_options(p)
    settings_options(p)
    p.add_argument("--wait", action="store_true", help="wait until the agent is ready, showing its progress")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits (default 300)")
    p.add_argument("--dry-run", action="store_true", help="send as a server-side dry run (dryRun=All)")
    p.set_defaults(handler=_cmd_apply)

    p = sub.add_parser("diff", help="show what apply would change (server-side dry run); exit 1 when it would")
    agent_options(p)
    settings_options(p)
    p.set_defaults(handler=_cmd_diff)

    p = sub.add_parser("delete", help="delete an agent; its data is kept unless --purge")
    agent_options(p, spec=False)
    settings_options(p)
    p.add_argument("--purge", action="store_true", help="also delete the agent's PVC (its data)")
    p.add_argument("--wait", action="store_true", help="wait until every object is gone")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)")
    p.set_defaults(handler=_cmd_delete)

    p = sub.add_parser("status", help="show an agent's status")
    agent_options(p, spec=False)
    settings_options(p)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(handler=_cmd_status)


def _run(settings: Settings, work: Any) -> int:
    # Imported here: kr8s and its HTTP stack are only needed by these commands.
    from ..backends.k8s.backend import K8sBackend

    async def main() -> int:
        backend = K8sBackend(settings)
        try:
            await backend.start()
            return await work(backend)
        finally:
            await backend.close()
    try:
        return asyncio.run(main())
    except (BackendError, TimeoutError) as exc:
        print(f"agentproxy: error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return EXIT_ERROR


def _cmd_apply(args: argparse.Namespace) -> int:
    settings = load(args).settings
    spec = spec_of(args, settings)

    async def work(backend: K8sBackend) -> int:
        if args.dry_run:
            for obj in await backend.dry_run(spec):
                print(f"{obj['kind'].lower()}/{obj['metadata']['name']} serverside-applied (server dry run)")
            return 0
        state = await backend.create(spec, any_session=True)  # the operator's own command, as an admin
        for name in ("configmap", "service", "pvc", "statefulset"):
            print(f"{name}/{state.details[name]} serverside-applied")
        if args.wait:
            return await _wait_ready(backend, args.session, args.agent, args.timeout)
        return 0
    return _run(settings, work)


async def _wait_ready(backend: K8sBackend, session: str, agent_id: str, timeout: float) -> int:
    """Print each phase once as it is reached: applied, scheduled, volume bound, ready."""
    deadline = time.monotonic() + timeout
    shown: set[str] = set()
    while time.monotonic() < deadline:
        state = await backend.get(session, agent_id)
        for phase in backend.progress(state):
            if phase not in shown:
                shown.add(phase)
                print(f"{agent_id}: {phase}", flush=True)
        if state.status == AgentStatus.READY:
            return 0
        if state.status == AgentStatus.FAILED:
            print(f"agentproxy: error: agent {agent_id} failed: {state.reason}: {state.message}", file=sys.stderr)
            return EXIT_ERROR
        await asyncio.sleep(0.25)
    print(f"agentproxy: error: agent {agent_id} was not ready within {timeout:.0f} s "
          f"(status {state.status.value}: {state.reason or ''} {state.message or ''})", file=sys.stderr)
    return EXIT_ERROR


def _cmd_diff(args: argparse.Namespace) -> int:
    settings = load(args).settings
    spec = spec_of(args, settings)

    async def work(backend: K8sBackend) -> int:
        lines = await backend.diff(spec)
        sys.stdout.writelines(lines)
        return EXIT_DIFF if lines else 0
    return _run(settings, work)


def _cmd_delete(args: argparse.Namespace) -> int:
    settings = load(args).settings

    async def work(backend: K8sBackend) -> int:
        state = await backend.delete(args.session, args.agent, purge=args.purge)
        print(f"agent {args.agent} deleted ({state.message})")
        if args.wait:
            deadline = time.monotonic() + args.timeout
            while not backend.gone(args.agent):
                if time.monotonic() > deadline:
                    print(f"agentproxy: error: agent {args.agent} still has objects after {args.timeout:.0f} s",
                          file=sys.stderr)
                    return EXIT_ERROR
                await asyncio.sleep(0.25)
            print(f"agent {args.agent} gone")
        return 0
    return _run(settings, work)


def _cmd_status(args: argparse.Namespace) -> int:
    settings = load(args).settings

    async def work(backend: K8sBackend) -> int:
        state = await backend.get(args.session, args.agent)
        print(json.dumps(state_json(state), indent=2) if args.output == "json" else _state_text(state))
        return 0
    return _run(settings, work)


def state_json(state: AgentState) -> dict[str, Any]:
    """A JSON-ready summary of an agent's state."""
    return {"id": state.id, "session": state.session, "mode": state.mode, "status": state.status.value,
            "reason": state.reason, "message": state.message, "created_at": state.created_at.isoformat(),
            "upstream": state.upstream, "restarts": state.restarts, "details": state.details}


def _state_text(state: AgentState) -> str:
    lines = [f"agent:     {state.id}", f"session:   {state.session}", f"status:    {state.status.value}"]
    if state.reason:
        lines.append(f"reason:    {state.reason}")
    if state.message:
        lines.append(f"message:   {state.message}")
    lines += [f"restarts:  {state.restarts}", f"namespace: {state.details.get('namespace')}",
              f"pod:       {state.details.get('pod')} ({state.details.get('pod_ip') or 'no IP yet'})"]
    return "\n".join(lines)
