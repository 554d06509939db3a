"""The ``agentproxy`` command line.

Every command's arguments are parsed here, in this package; the commands call
the library (settings, rendering, backends, the server) and print. Every
failure the user can cause ends in one line on stderr and a non-zero exit
status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..agentapi import InstallError
from ..render import RenderError
from ..settings import SettingsError
from ..spec import SpecError
from . import client, k8s, manifests, serve, tools
from .parser import EXIT_USAGE, Parser, UsageError

__all__ = ["COMMAND_GROUPS", "UsageError", "build_parser", "main"]

COMMAND_GROUPS: tuple[Callable[[Any], None], ...] = (
    manifests.register,  # render, rbac
    k8s.register,        # apply, diff, delete, status
    tools.register,      # install-agentapi, install-agents, prepare-home, config
    serve.register,      # serve
    client.register,     # agents ..., chat (over HTTP, against any agentproxy server)
)
"""Every group of subcommands, in the order ``--help`` lists them: each adds its commands
to the subparsers it is given. A new group is one more line here."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = Parser(prog="agentproxy", description="Run, supervise and proxy AI coding agents.")
    parser.add_argument("--version", action="version", version=f"agentproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for register in COMMAND_GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentproxy`` script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], Any] = args.handler
        return int(handler(args) or 0)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (SettingsError, SpecError, RenderError, InstallError) as exc:
        print(f"agentproxy: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
