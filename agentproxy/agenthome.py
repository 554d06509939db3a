"""The prepared home of a Claude Code agent: what it must find so that it starts unattended.

Started with an empty ``HOME``, Claude Code shows its first-run screens, asks
whether to trust the working directory and whether to use the key in
``ANTHROPIC_API_KEY``, and checks that it can reach api.anthropic.com (ignoring
``ANTHROPIC_BASE_URL``), exiting when it cannot. An agent's first message would
land in one of those dialogs. So every Claude agent gets a home of its own, in
its own data (``<work dir>/.agentproxy/home`` locally), prepared before each
start:

- ``.claude.json``: onboarding done, the work directory trusted, the configured
  key approved (Claude Code records the last 20 characters of a key it was told
  to use, in ``customApiKeyResponses.approved``), auto-updates off;
- ``.claude/settings.json``: the auto-updater and non-essential traffic off (in
  its ``env``), the permission mode the operator chose
  (``agents.claude.permission_mode``), when one is set, and hooks that tell
  agentproxy when the agent waits for its user (see :mod:`agentproxy.waiting`).

The merge is pure (:func:`claude_config`, :func:`claude_settings`): it sets the
keys above and keeps everything else that is already there, what Claude Code
wrote itself and whatever a user added. Both files are written with mode 0600,
atomically (a crash leaves the old file or the new one), since ``.claude.json``
holds part of the key. :func:`prepare_claude_home` is the thin I/O around it.

In a pod the preparation runs in the container itself, before agentapi, on the
agent's volume: the launcher every container runs (:mod:`agentproxy.launcher`,
``--claude-home``) calls :func:`prepare_or_report`, sets ``HOME`` and
:data:`QUIET_ENV` and starts agentapi. This module's own entry point
(``python3 -m agentproxy.agenthome --work-dir DIR -- COMMAND``, :func:`main`) does
the same and replaces itself with COMMAND. Both need the standard library only,
as the agent image holds agentproxy without its dependencies.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import posixpath
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .launch import STATE_DIR
from .privatefile import write_private
from .waiting import HOOK_EVENTS

WAITING_MODULE = "agentproxy.waiting"
"""The module Claude Code's hooks run (see :func:`waiting_hook_command`)."""

HOME_DIR = "home"
"""The agent's home, inside :data:`agentproxy.launch.STATE_DIR` of its work directory."""
CONFIG_FILE = ".claude.json"
SETTINGS_FILE = posixpath.join(".claude", "settings.json")
KEY_TAIL = 20
"""Claude Code remembers an approved key by its last 20 characters (after trimming it)."""
QUIET_ENV = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
"""Variables that keep Claude Code from updating itself and from traffic beyond the model's API."""
KEY_VARIABLE = "ANTHROPIC_API_KEY"
"""The variable Claude Code reads the model's key from."""
BASE_URL_VARIABLE = "ANTHROPIC_BASE_URL"
"""The variable Claude Code reads the model's endpoint from."""
ENTRY_MODULE = "agentproxy.agenthome"
"""``python3 -m`` this module: prepare the home, then run the agent (see :func:`main`)."""


class HomeError(OSError):
    """A file of the agent's home cannot be read as JSON or written; the message (one line)
    says which and why. An ``OSError``: whoever starts the agent handles it as a failed start."""


def home_dir(work_dir: str) -> str:
    """The home of the agent whose work directory is ``work_dir``."""
    return posixpath.join(work_dir, STATE_DIR, HOME_DIR)


def key_tail(api_key: str) -> str:
    """What Claude Code records of an approved key."""
    return api_key.strip()[-KEY_TAIL:]


def uses_claude(command: tuple[str, ...] | list[str]) -> bool:
    """True when an agent's command runs Claude Code (its program is named ``claude``)."""
    return bool(command) and posixpath.basename(command[0]) == "claude"


def claude_config(existing: Mapping[str, Any], *, work_dir: str, api_key: str | None) -> dict[str, Any]:
    """``.claude.json`` as it must be for an unattended agent in ``work_dir``: ``existing``
    with onboarding done, ``work_dir`` trusted, ``api_key`` (when given) approved and
    auto-updates off; every other key, and every other project, as it was."""
    config = copy.deepcopy(dict(existing))
    config["hasCompletedOnboarding"] = True
    config["autoUpdates"] = False
    projects = config.get("projects")
    projects = dict(projects) if isinstance(projects, Mapping) else {}
    project = projects.get(work_dir)
    project = dict(project) if isinstance(project, Mapping) else {}
    project["hasTrustDialogAccepted"] = True
    project["hasCompletedProjectOnboarding"] = True
    projects[work_dir] = project
    config["projects"] = projects
    if api_key and api_key.strip():
        tail = key_tail(api_key)
        responses = config.get("customApiKeyResponses")
        responses = dict(responses) if isinstance(responses, Mapping) else {}
        approved = [k for k in _strings(responses.get("approved")) if k != tail]
        rejected = [k for k in _strings(responses.get("rejected")) if k != tail]
        responses["approved"] = [*approved, tail]
        responses["rejected"] = rejected  # the operator configured this key: a past "no" does not stand
        config["customApiKeyResponses"] = responses
    return config


def waiting_hook_command(python: str, work_dir: str) -> str:
    """The command Claude Code's hooks run to tell agentproxy it waits (see :mod:`agentproxy.waiting`)."""
    return f"{shlex.quote(python)} -m {WAITING_MODULE} --work-dir {shlex.quote(work_dir)}"


def with_waiting_hooks(hooks: Any, command: str) -> dict[str, Any]:
    """``hooks`` (the ``hooks`` of a settings file) with agentproxy's hook on every event of
    :data:`agentproxy.waiting.HOOK_EVENTS` (an earlier one of agentproxy's replaced), and every
    other hook as it was."""
    merged = copy.deepcopy(dict(hooks)) if isinstance(hooks, Mapping) else {}
    for event in HOOK_EVENTS:
        groups = [g for g in merged.get(event) or [] if isinstance(g, Mapping)]
        kept = []
        for group in groups:
            inner = [h for h in group.get("hooks") or []
                     if not (isinstance(h, Mapping) and WAITING_MODULE in str(h.get("command", "")))]
            if inner:
                kept.append({**group, "hooks": inner})
        entry: dict[str, Any] = {"hooks": [{"type": "command", "command": command}]}
        if event == "Notification":
            entry["matcher"] = ""  # every notification: the hook picks the permission questions
        merged[event] = [*kept, entry]
    return merged


def claude_settings(existing: Mapping[str, Any], *, permission_mode: str | None,
                    hook_command: str | None = None, api_key_helper: str | None = None) -> dict[str, Any]:
    """``.claude/settings.json``: ``existing`` with :data:`QUIET_ENV` in its ``env``,
    ``permissions.defaultMode`` set to ``permission_mode`` when one is given, the hooks
    that tell agentproxy the agent waits for its user (``hook_command``, when given), and
    ``apiKeyHelper`` (``api_key_helper``, when given: the shell command Claude Code runs for
    its key, again after a 401, so that a key that comes after its start is taken)."""
    settings = copy.deepcopy(dict(existing))
    if api_key_helper is not None:
        settings["apiKeyHelper"] = api_key_helper
    if hook_command is not None:
        settings["hooks"] = with_waiting_hooks(settings.get("hooks"), hook_command)
    env = settings.get("env")
    settings["env"] = {**(dict(env) if isinstance(env, Mapping) else {}), **QUIET_ENV}
    if permission_mode is not None:
        permissions = settings.get("permissions")
        permissions = dict(permissions) if isinstance(permissions, Mapping) else {}
        permissions["defaultMode"] = permission_mode
        if permission_mode != "auto":
            # Otherwise Claude Code offers to switch to auto mode in a dialog at start, and a
            # first message typed into it answers "yes".
            permissions["disableAutoMode"] = "disable"
        settings["permissions"] = permissions
    return settings


def claude_environment(home: str, *, base_url: str | None, api_key: str | None) -> dict[str, str]:
    """The variables a Claude agent runs with: its home, :data:`QUIET_ENV`, the model's
    endpoint when one is configured and the key (a secret: never in a spec, a ConfigMap
    or a log)."""
    env = {"HOME": home, **QUIET_ENV}
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    if api_key:
        env["ANTHROPIC_API_KEY"] = api_key
    return env


def prepare_claude_home(home: Path, *, work_dir: str, api_key: str | None,
                        permission_mode: str | None = None, hook_command: str | None = None,
                        api_key_helper: str | None = None) -> None:
    """Create or update the prepared home ``home`` (see the module's docstring)."""
    config_path = home / CONFIG_FILE
    settings_path = home / SETTINGS_FILE
    _write_json(config_path, claude_config(_read_json(config_path), work_dir=work_dir, api_key=api_key))
    _write_json(settings_path, claude_settings(_read_json(settings_path), permission_mode=permission_mode,
                                               hook_command=hook_command, api_key_helper=api_key_helper))


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise HomeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        # Left as it is: it may be a user's file half-edited; Claude Code would not start either.
        raise HomeError(f"{path} is not JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise HomeError(f"{path} must hold a JSON object; fix or remove it")
    return data


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    try:
        write_private(path, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise HomeError(f"cannot write {path}: {exc.strerror or exc}") from None


def key_file_helper(path: str) -> str:
    """The ``apiKeyHelper`` command that prints the key in ``path`` once it is there (see
    :mod:`agentproxy.keywait`)."""
    return f"{shlex.quote(sys.executable or 'python3')} -m agentproxy.keywait {shlex.quote(path)}"


def prepare_or_report(work_dir: str, *, home: str | None, api_key_env: str,
                      permission_mode: str | None, waiting_hooks: bool = False,
                      api_key_helper: str | None = None) -> str | None:
    """Prepare the home of a Claude Code agent working in ``work_dir`` (``home``, else its
    place in the work directory), its key from the variable ``api_key_env``, with the hooks
    of :mod:`agentproxy.waiting` when ``waiting_hooks``: the home's path, or ``None`` once the
    one-line error is printed (``prepare-home`` and :func:`main`)."""
    real_work_dir = os.path.realpath(work_dir)  # Claude Code knows a project by its real path
    home = home or home_dir(real_work_dir)
    hook = waiting_hook_command(sys.executable or "python3", real_work_dir) if waiting_hooks else None
    try:
        prepare_claude_home(Path(home), work_dir=real_work_dir, api_key=os.environ.get(api_key_env) or None,
                            permission_mode=permission_mode, hook_command=hook, api_key_helper=api_key_helper)
    except HomeError as exc:
        print(f"agentproxy: error: {exc.strerror or exc}", file=sys.stderr)
        return None
    return home


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m agentproxy.agenthome --work-dir DIR [--permission-mode M] [--waiting-hooks] -- COMMAND...``:
    prepare the home of the agent working in DIR (the key from ``$ANTHROPIC_API_KEY``), then
    replace this process with COMMAND, its ``HOME`` the prepared home (a container's command:
    agentapi keeps the process, and the kubelet's signals reach it). Without COMMAND, print the
    home. A failure is one line on stderr and exit status 1."""
    parser = argparse.ArgumentParser(prog=f"python3 -m {ENTRY_MODULE}",
                                     description="Prepare the home of a Claude Code agent, then run COMMAND in it.")
    parser.add_argument("--work-dir", required=True, metavar="DIR", help="the agent's working directory")
    parser.add_argument("--home", metavar="DIR", help="the home to prepare (default: DIR/.agentproxy/home)")
    parser.add_argument("--api-key-env", default=KEY_VARIABLE, metavar="NAME",
                        help=f"the variable holding the model's key (default: {KEY_VARIABLE})")
    parser.add_argument("--permission-mode", metavar="MODE", help="Claude Code's permissions.defaultMode")
    parser.add_argument("--waiting-hooks", action="store_true",
                        help="add the hooks that report when the agent waits for its user")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND... to run in the prepared home")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    home = prepare_or_report(args.work_dir, home=args.home, api_key_env=args.api_key_env,
                             permission_mode=args.permission_mode, waiting_hooks=args.waiting_hooks)
    if home is None:
        return 1
    if not command:
        print(home)
        return 0
    os.environ.update({"HOME": home, **QUIET_ENV})
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"agentproxy: error: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
