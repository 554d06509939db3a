"""What every command shares: the parser that fails in one line, the settings options,
and the options that describe one agent."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..settings import LoadedSettings, load_settings
from ..settings.schema import Settings
from ..spec import AgentSpec, build_spec

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake on the command line; the message is shown as is."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def settings_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set KEY=VALUE`` (see :func:`load`)."""
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (.yaml, .yml or .json); default: $AGENTAPI_CONFIG")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set k8s_mode.namespace=agents (repeatable)")


def load(args: argparse.Namespace) -> LoadedSettings:
    """The settings the command's ``--config`` and ``--set`` options ask for."""
    return load_settings(args.config, args.overrides)


def env_pair(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``--env``."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def agent_options(parser: argparse.ArgumentParser, *, spec: bool = True, id_required: bool = True,
                  id_help: str = "agent id") -> None:
    """``--session`` and ``--agent``; with ``spec``, also what a new agent is made of:
    ``--type``, ``--env`` and ``--message``."""
    parser.add_argument("--session", required=True, help="session id")
    parser.add_argument("--agent", required=id_required, metavar="ID", help=id_help)
    if not spec:
        return
    parser.add_argument("--type", dest="agent_type", help="agent type (default: agents.default_type)")
    parser.add_argument("--env", action="append", type=env_pair, default=[], metavar="NAME=VALUE",
                        help="environment variable for the agent (repeatable)")
    parser.add_argument("--message", help="first prompt sent to the agent")


def spec_of(args: argparse.Namespace, settings: Settings) -> AgentSpec:
    """The agent the options of :func:`agent_options` describe."""
    return build_spec(settings, args.session, args.agent, args.agent_type, dict(args.env), args.message)
