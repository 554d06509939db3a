"""The client's subcommands, ``agents ...``, ``chat``, ``login`` and ``logout`` (see :mod:`agentproxy.client`).

They speak the public HTTP API only. Each handler returns its exit status and
turns every failure into one line on stderr (see :mod:`.errors` for the
numbers). The heavy imports (aiohttp) wait until a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..client.errors import EXIT_INTERRUPTED, EXIT_OK, ClientError, UsageProblem
from ..client.output import FORMATS
from .parser import env_pair

SERVER_ENV = "AGENTPROXY_URL"
KEY_ENV = "AGENTPROXY_API_KEY"
DEFAULT_SERVER = "http://127.0.0.1:8080"
STATUSES = ("pending", "starting", "ready", "waiting_input", "failed", "stopping", "stopped", "suspended")
HIDDEN = "***"


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("server")
    group.add_argument("--server", metavar="URL", default=None,
                       help=f"the agentproxy server (default: ${SERVER_ENV}, else {DEFAULT_SERVER})")
    group.add_argument("--api-key", metavar="KEY", default=None,
                       help=f"API key (default: ${KEY_ENV}); prefer the variable: a command line can be "
                            "seen by other users until the key is hidden from it")
    return options


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def _tail(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 10000, got {text!r}")
    return int(text)


def register(subparsers: Any) -> None:
    """Register ``agents`` (ls, get, create, profiles, hooks, schedules, deliveries, rm, suspend, resume, logs)
    and ``chat`` on the CLI's subparsers."""
    conn = _connection_options()
    agents = subparsers.add_parser(
        "agents", help="list, create, inspect and delete agents on an agentproxy server",
        description="Manage agents through an agentproxy server's HTTP API.")
    verbs = agents.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=type(agents))

    ls = verbs.add_parser("ls", parents=[conn], help="list agents", description="List agents as a table, "
                          "JSON or YAML; --watch keeps printing changes as they happen.")
    ls.add_argument("--session", help="only this session's agents")
    ls.add_argument("--status", choices=STATUSES, help="only agents with this status")
    _output_option(ls)
    ls.add_argument("-w", "--watch", action="store_true", help="after the list, print every change (Ctrl-C ends)")
    ls.set_defaults(handler=_handler("ls"))

    watch = verbs.add_parser("watch", parents=[conn], help="list agents, then print every change",
                             description="List agents, then print every change of them as it happens "
                                         "(GET /events; the same as ls --watch; Ctrl-C ends).")
    watch.add_argument("--session", help="only this session's agents")
    watch.add_argument("--status", choices=STATUSES, help="only agents with this status")
    _output_option(watch)
    watch.set_defaults(handler=_handler("watch"))

    get = verbs.add_parser("get", parents=[conn], help="show one agent")
    _agent_args(get)
    _output_option(get)
    get.set_defaults(handler=_handler("get"))

    create = verbs.add_parser("create", parents=[conn], help="create an agent",
                              description="Create an agent in SESSION; with --wait, show its progress on stderr "
                                          "(its status and each step of its start: redrawn in place on a "
                                          "terminal, one line each otherwise or with --plain) until it is ready "
                                          "(exit 5 if it fails, 6 on timeout).")
    create.add_argument("session", metavar="SESSION", help="session id")
    create.add_argument("--id", help="agent id (default: a random one)")
    create.add_argument("--type", dest="agent_type", help="agent type (default: the server's default)")
    create.add_argument("--env", action="append", type=env_pair, default=[], metavar="NAME=VALUE",
                        help="environment variable of the agent (repeatable)")
    create.add_argument("--message", help="first prompt for the agent")
    create.add_argument("--profile", help="profile of the agent (see `agents profiles`; default: the server's)")
    create.add_argument("--share", metavar="GROUP", help="share it with one of your groups (they see and talk to it)")
    _wait_options(create)
    _output_option(create)
    create.set_defaults(handler=_handler("create"))

    profiles = verbs.add_parser("profiles", parents=[conn], help="list the profiles you may create agents with")
    _output_option(profiles)
    profiles.set_defaults(handler=_handler("profiles"))

    for verb, text in (("hooks", "list the server's inbound webhooks (admins); put, rm: define, delete"),
                       ("schedules", "list the server's schedules, their last and next tick (admins)")):
        listing = verbs.add_parser(verb, parents=[conn], help=text)
        _output_option(listing)
        listing.set_defaults(handler=_handler(verb))
        if verb == "hooks":
            _hook_verbs(listing, conn, type(agents))
    deliveries = verbs.add_parser("deliveries", parents=[conn], help="list recent deliveries of hooks, schedules "
                                  "and notifications (admins)")
    deliveries.add_argument("--kind", choices=("hook", "schedule", "notification"), help="only this kind")
    deliveries.add_argument("--limit", type=_tail, default=50, help="at most this many (default 50)")
    _output_option(deliveries)
    deliveries.set_defaults(handler=_handler("deliveries"))

    rm = verbs.add_parser("rm", parents=[conn], help="stop and delete an agent")
    _agent_args(rm)
    rm.add_argument("--purge", action="store_true", help="also delete its data (asks first)")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask before --purge")
    _output_option(rm)
    rm.set_defaults(handler=_handler("rm"))

    suspend = verbs.add_parser("suspend", parents=[conn], help="save and stop an agent, keeping its data",
                               description="Suspend an agent: it stops, keeping its data and conversation, and "
                                           "resumes with `agents resume`, its next request or a create with the "
                                           "same spec. Suspending a suspended agent changes nothing.")
    _agent_args(suspend)
    _output_option(suspend)
    suspend.set_defaults(handler=_handler("suspend"))

    resume = verbs.add_parser("resume", parents=[conn], help="start a suspended agent again",
                              description="Resume a suspended agent with its data and conversation; with --wait, "
                                          "show its progress until it is ready (exit 5 if it fails, 6 on timeout). "
                                          "Resuming an agent that is not suspended changes nothing.")
    _agent_args(resume)
    _wait_options(resume)
    _output_option(resume)
    resume.set_defaults(handler=_handler("resume"))

    logs = verbs.add_parser("logs", parents=[conn], help="print an agent's output")
    _agent_args(logs)
    logs.add_argument("--tail", type=_tail, default=100, metavar="N", help="how many lines (default: 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    logs.add_argument("--interval", type=_positive, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS)
    logs.set_defaults(handler=_handler("logs"))

    chat = subparsers.add_parser(
        "chat", parents=[conn], help="talk to an agent (interactive, or one message with -m)",
        description="Talk to an agent through the proxy: its replies stream in as it writes them. "
                    "Without -m, an interactive chat (Ctrl-C leaves); with -m, send one message, "
                    "print the reply once the agent is done, and exit.")
    _agent_args(chat)
    chat.add_argument("-m", "--message", help="send this message, print the reply and exit")
    chat.add_argument("--timeout", type=_positive, default=300.0, metavar="SECONDS",
                      help="with -m: how long to wait for the agent and its reply (default: 300)")
    chat.set_defaults(handler=_handler("chat"))

    server_only = argparse.ArgumentParser(add_help=False)
    server_only.add_argument("--server", metavar="URL", default=None,
                             help=f"the agentproxy server (default: ${SERVER_ENV}, else {DEFAULT_SERVER})")
    login = subparsers.add_parser(
        "login", parents=[server_only], help="sign in with the server's identity provider (OpenID Connect)",
        description="Sign in with the identity provider of a server that has sign-in (server.oidc): "
                    "a browser opens the provider's page, and the token is kept (0600) for the "
                    "agents and chat commands, which present it when no API key is given.")
    login.add_argument("--no-browser", action="store_true", help="only print the URL to open")
    login.add_argument("--timeout", type=_positive, default=300.0, metavar="SECONDS",
                       help="how long to wait for the sign-in (default: 300)")
    login.set_defaults(handler=_login)
    logout = subparsers.add_parser("logout", parents=[server_only], help="forget the token kept for the server")
    logout.set_defaults(handler=_logout)


def _login(args: argparse.Namespace) -> int:
    from ..client.login import login

    server = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    try:
        path = asyncio.run(login(server, open_browser=not args.no_browser, timeout=args.timeout))
    except ClientError as exc:
        print(f"agentproxy: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(f"signed in; the token is kept in {path}", file=sys.stderr)
    return EXIT_OK


def _logout(args: argparse.Namespace) -> int:
    from ..client.login import forget

    server = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    print("signed out" if forget(server) else f"no token was kept for {server}", file=sys.stderr)
    return EXIT_OK


def _agent_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="session id")
    parser.add_argument("agent", metavar="AGENT", help="agent id")


def _hook_verbs(hooks: argparse.ArgumentParser, conn: argparse.ArgumentParser, parser_class: Any) -> None:
    """``agents hooks put ID --file FILE`` and ``agents hooks rm ID`` (``agents hooks`` alone lists)."""
    verbs = hooks.add_subparsers(dest="hook_verb", required=False, metavar="VERB", parser_class=parser_class)
    put = verbs.add_parser("put", parents=[conn], help="define or replace a hook from a YAML or JSON file (admins)",
                           description="Define or replace hook ID from FILE: the fields of a hook in "
                                       "triggers.hooks, the secret as secret_env or secret_value.")
    put.add_argument("id", metavar="ID", help="the hook's id (POST /hooks/ID)")
    put.add_argument("-f", "--file", required=True, metavar="FILE", help="the hook's fields, YAML or JSON ('-': stdin)")
    _output_option(put)
    put.set_defaults(handler=_handler("hook_put"))
    rm = verbs.add_parser("rm", parents=[conn], help="delete a hook defined through the API (admins)")
    rm.add_argument("id", metavar="ID", help="the hook's id")
    rm.set_defaults(handler=_handler("hook_rm"))


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format (default: table)")


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait until the agent is ready")
    parser.add_argument("--timeout", type=_positive, default=300.0, metavar="SECONDS",
                        help="how long --wait waits (default: 300)")
    parser.add_argument("--plain", action="store_true",
                        help="with --wait on a terminal: one line per status and step rather than a redrawn display")


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        return run(name, args)
    return handle


def hide_key_from_process_title(argv: list[str], key: str) -> list[str]:
    """``argv`` with ``key`` replaced wherever it appears (``--api-key KEY`` or ``--api-key=KEY``)."""
    return [arg.replace(key, HIDDEN) if key and key in arg else arg for arg in argv]


def _scrub_process_title(key: str) -> None:
    """Other users can read a process's command line: replace the key in it at once."""
    import setproctitle

    setproctitle.setproctitle(" ".join(hide_key_from_process_title(list(sys.orig_argv), key)))


def run(name: str, args: argparse.Namespace) -> int:
    """Run one client command; its exit status. Failures are one line on stderr."""
    if args.api_key:
        _scrub_process_title(args.api_key)
    server = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    key = args.api_key or os.environ.get(KEY_ENV) or None
    if key is None:
        from ..client.login import stored_token  # the token of `agentproxy login`, if any
        key = stored_token(server)
    streaming = name == "watch" or (name == "ls" and args.watch) or (name == "logs" and args.follow) or (
        name == "chat" and args.message is None)
    try:
        return asyncio.run(_dispatch(name, args, server, key))
    except ClientError as exc:
        print(f"agentproxy: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C is how a watch, a follow or a chat ends; anything else was interrupted.
        return EXIT_OK if streaming else EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


async def _dispatch(name: str, args: argparse.Namespace, server: str, key: str | None) -> int:
    from ..client import agents, chat, triggers
    from ..client.http import ApiClient

    async with ApiClient(server, key) as client:
        if name == "chat":
            if args.message is not None:
                if not args.message.strip():
                    raise UsageProblem("-m: the message is empty")
                return await chat.send_one(client, args.session, args.agent, args.message, args.timeout)
            return await chat.interactive(client, args.session, args.agent)
        module = triggers if name in ("hooks", "hook_put", "hook_rm", "schedules", "deliveries") else agents
        command: Callable[..., Awaitable[int]] = getattr(module, name)
        return await command(client, args)

