"""``agentproxy install-agentapi``, ``install-agents`` and ``config``: the machine and the settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..agentapi import AGENTAPI_VERSION, SOURCE_VARIABLE, default_source
from ..agentapi import install as install_agentapi
from ..agentprograms import PROGRAMS
from ..agentprograms import install as install_programs
from ..settings.show import format_settings
from .parser import load, settings_options


def register(sub: Any) -> None:
    """Add ``install-agentapi``, ``install-agents`` and ``config`` to the top-level subparsers."""
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

    config = sub.add_parser("config", help="print the effective settings and where each came from")
    settings_options(config)
    config.set_defaults(handler=_cmd_config)


def _cmd_install_agentapi(args: argparse.Namespace) -> int:
    path = install_agentapi(args.source, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(path)
    return 0


def _cmd_install_agents(args: argparse.Namespace) -> int:
    paths = install_programs(args.programs or tuple(PROGRAMS),
                             say=lambda line: print(line, file=sys.stderr, flush=True))
    for path in paths.values():
        print(path)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(format_settings(load(args)))
    return 0
