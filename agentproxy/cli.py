"""The ``agentproxy`` command line.

Every failure the user can cause ends in one line on stderr and a non-zero exit
status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from . import __version__
from .agentapi import AGENTAPI_VERSION, SOURCE_VARIABLE, InstallError, default_source
from .agentapi import install as install_agentapi
from .api.serve import add_serve_command  # light: aiohttp loads only when serving
from .cli_k8s import add_k8s_commands
from .client import add_client_commands
from .naming import DNS_SUBDOMAIN_RULE, is_dns_subdomain
from .render import RenderError, dump_json, dump_yaml, render_agent, render_rbac
from .settings import LoadedSettings, SettingsError, load_settings
from .settings.show import format_settings
from .spec import SpecError, build_spec

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake on the command line; the message is shown as is."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage block on errors; one line says more.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (.yaml, .yml or .json); default: $AGENTAPI_CONFIG")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set k8s_mode.namespace=agents (repeatable)")


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="agentproxy", description="Run, supervise and proxy AI coding agents.")
    parser.add_argument("--version", action="version", version=f"agentproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    render = sub.add_parser("render", help="print the Kubernetes manifests of one agent",
                            description="Print the four manifests agentproxy would apply for an agent, "
                                        "without contacting any cluster.")
    render.add_argument("--session", required=True, help="session id")
    render.add_argument("--agent", metavar="ID", help="agent id (a DNS-1123 label of at most 46 characters; default: a random one)")
    render.add_argument("--type", dest="agent_type", help="agent type (default: agents.default_type)")
    render.add_argument("--env", action="append", type=_env_pair, default=[], metavar="NAME=VALUE",
                        help="environment variable for the agent (repeatable)")
    render.add_argument("--message", help="first prompt sent to the agent")
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    _settings_options(render)
    render.set_defaults(handler=_cmd_render)

    rbac = sub.add_parser("rbac", help="print the ServiceAccount, Role and RoleBinding of the proxy (k8s mode)")
    rbac.add_argument("--name", default="agentproxy", help="name of the ServiceAccount, Role and RoleBinding")
    rbac.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    _settings_options(rbac)
    rbac.set_defaults(handler=_cmd_rbac)

    add_k8s_commands(sub, _settings_options, _env_pair)

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
    _settings_options(config)
    config.set_defaults(handler=_cmd_config)
    add_serve_command(sub)
    add_client_commands(sub)
    return parser


def _load(args: argparse.Namespace) -> LoadedSettings:
    return load_settings(args.config, args.overrides)


def _cmd_render(args: argparse.Namespace) -> int:
    settings = _load(args).settings
    spec = build_spec(settings, args.session, args.agent, args.agent_type, dict(args.env), args.message)
    objects = render_agent(settings, spec)
    sys.stdout.write(dump_json(objects) if args.output == "json" else dump_yaml(objects))
    return 0


def _cmd_rbac(args: argparse.Namespace) -> int:
    if not is_dns_subdomain(args.name):
        raise UsageError(f"agentproxy rbac: --name {args.name!r}: {DNS_SUBDOMAIN_RULE}")
    objects = render_rbac(_load(args).settings, args.name)
    sys.stdout.write(dump_json(objects) if args.output == "json" else dump_yaml(objects))
    return 0


def _cmd_install_agentapi(args: argparse.Namespace) -> int:
    path = install_agentapi(args.source, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(path)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(format_settings(_load(args)))
    return 0


_FRIENDLY_ERRORS: tuple[type[Exception], ...] = (UsageError, SettingsError, SpecError, RenderError, InstallError)


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
