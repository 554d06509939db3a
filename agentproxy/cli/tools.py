"""``agentproxy install-agentapi``, ``install-agents``, ``prepare-home`` and ``config``: the machine and the settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..agentapi import (
    AGENTAPI_VERSION,
    SOURCE_VARIABLE,
    InstallError,
    cache_root,
    default_source,
    install as install_agentapi,
)
from ..agenthome import prepare_or_report
from ..agentprograms import PROGRAMS, install as install_programs
from ..settings.schema import CLAUDE_PERMISSION_MODES
from ..settings.show import format_settings
from .parser import load, settings_options


def register(sub: Any) -> None:
    """Add ``install-agentapi``, ``install-agents``, ``prepare-home`` and ``config`` to the top-level subparsers."""
    install = sub.add_parser(
        "install-agentapi", help=f"make sure agentapi {AGENTAPI_VERSION} is installed (build it when needed)",
        description=f"Find agentapi on PATH or in the user-level cache, or build agentapi {AGENTAPI_VERSION}: "
                    "first with `go install`, then, where the Go module proxy refuses it, from a source "
                    "archive. Prints the path of the binary.")
    install.add_argument("--source", metavar="PATH", default=default_source(),
                         help=f"agentapi {AGENTAPI_VERSION} sources (.tar.gz or directory) to build from when "
                              f"`go install` fails (default: ${SOURCE_VARIABLE})")
    install.set_defaults(handler=_cmd_install_agentapi)

    pinned = ", ".join(p.spec for p in PROGRAMS.values())
    agents = sub.add_parser(
        "install-agents", help=f"make sure the agent programs are installed ({pinned})",
        description="Find each agent program on PATH or in the user-level cache, or install its pinned "
                    f"version from the npm registry into the cache ({pinned}). Prints their paths.")
    agents.add_argument("programs", nargs="*", metavar="PROGRAM",
                        help=f"which ones (default: all of {', '.join(sorted(PROGRAMS))})")
    agents.set_defaults(handler=_cmd_install_agents)

    home = sub.add_parser(
        "prepare-home", help="prepare the home of a Claude Code agent (run it before agentapi)",
        description="Write .claude.json and .claude/settings.json of a Claude Code agent whose work "
                    "directory is --work-dir: onboarding done, the directory trusted, the key in the "
                    "--api-key-env variable approved, updates and non-essential traffic off, merged into "
                    "what is there (mode 0600). What local mode does before every start of a Claude agent; "
                    "a container can run it before agentapi. Prints the home: run Claude Code with HOME set to it.")
    home.add_argument("--work-dir", required=True, metavar="DIR", help="the agent's working directory")
    home.add_argument("--home", metavar="DIR", help="the home to prepare (default: DIR/.agentproxy/home)")
    home.add_argument("--api-key-env", default="ANTHROPIC_API_KEY", metavar="NAME",
                      help="the variable holding the model's key (default: ANTHROPIC_API_KEY)")
    home.add_argument("--permission-mode", choices=CLAUDE_PERMISSION_MODES,
                      help="Claude Code's permissions.defaultMode (default: leave it as it is)")
    home.set_defaults(handler=_cmd_prepare_home)

    config = sub.add_parser("config", help="print the effective settings and where each came from")
    settings_options(config)
    config.set_defaults(handler=_cmd_config)


def _cmd_install_agentapi(args: argparse.Namespace) -> int:
    try:
        path = install_agentapi(args.source, say=lambda line: print(line, file=sys.stderr, flush=True))
    except OSError as exc:  # the cache cannot be written (a read-only HOME, a file in the way, a full disk)
        raise InstallError(f"cannot write agentapi into {cache_root()}: {exc.strerror or exc} "
                           f"({exc.filename}); set AGENTPROXY_CACHE to a writable directory") from None
    print(path)
    return 0


def _cmd_install_agents(args: argparse.Namespace) -> int:
    paths = install_programs(args.programs or tuple(PROGRAMS),
                             say=lambda line: print(line, file=sys.stderr, flush=True))
    for path in paths.values():
        print(path)
    return 0


def _cmd_prepare_home(args: argparse.Namespace) -> int:
    home = prepare_or_report(args.work_dir, home=args.home, api_key_env=args.api_key_env,
                             permission_mode=args.permission_mode)
    if home is None:
        return 1
    print(home)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(format_settings(load(args)))
    return 0
