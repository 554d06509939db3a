"""``agentproxy install-agentapi`` and ``agentproxy config``: the machine and the settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..agentapi import AGENTAPI_VERSION, SOURCE_VARIABLE, InstallError, cache_root, default_source
from ..agentapi import install as install_agentapi
from ..settings.show import format_settings
from .parser import load, settings_options


def register(sub: Any) -> None:
    """Add ``install-agentapi`` and ``config`` to the top-level subparsers."""
    install = sub.add_parser(
        "install-agentapi", help=f"make sure agentapi {AGENTAPI_VERSION} is installed (build it when needed)",
        description=f"Find agentapi on PATH or in the user-level cache, or build agentapi {AGENTAPI_VERSION}: "
                    "first with `go install`, then, where the Go module proxy refuses it, from a source "
                    "archive. Prints the path of the binary.")
    install.add_argument("--source", metavar="PATH", default=default_source(),
                         help=f"agentapi {AGENTAPI_VERSION} sources (.tar.gz or directory) to build from when "
                              f"`go install` fails (default: ${SOURCE_VARIABLE})")
    install.set_defaults(handler=_cmd_install_agentapi)

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


def _cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(format_settings(load(args)))
    return 0
