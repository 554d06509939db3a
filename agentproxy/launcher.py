"""The launcher: the one entry point of an agent's process, cold or warm.

``python3 -m agentproxy.launcher [OPTIONS] -- agentapi server --port P ... -- PROGRAM...``

1. **Waiting for a binding** (a warm pool member, ``--bind HOST:PORT``): it serves one route,
   ``POST /bind`` with ``Authorization: Bearer TOKEN`` and a JSON body
   ``{"env": {"NAME": "value", ...}}``: the owner's variables, credentials and first message
   (``AGENTAPI_INITIAL_PROMPT``) that the agent starts with; with ``AGENTPROXY_BOUND=1`` in its
   environment (a claimed member's container that restarted) it starts at once instead. The
   token is the member's own
   (``--token-file``, a file only the proxy and this process can read, or the variable
   :data:`TOKEN_VARIABLE`, removed before anything else starts): a request without it is
   refused with 401 and changes nothing. Nothing ever reads a binding back: there is no route
   for it, and once bound the listener is closed. ``GET /healthz`` says only that it waits.
   A token file that disappears while it waits ends the wait (status 1).

   With ``--prestart`` agentapi and its program start at once, before any binding, so that a
   claim finds the program ready: the binding then brings only the first message, which the
   launcher sends through agentapi's ``POST /message`` once agentapi says ``stable``. The
   owner's other variables reach the program at its next start alone (a claimed member's
   container that starts again is bound from its environment). A Claude Code member
   (``--claude-home``) gets its key late: its home's ``apiKeyHelper`` (:mod:`agentproxy.keywait`)
   waits for a file in a private directory of the launcher, written from the binding's
   ``ANTHROPIC_API_KEY``.
2. **Preparing** a Claude Code agent's home (``--claude-home``, see :mod:`agentproxy.agenthome`),
   with the key the binding or the environment holds.
3. **Running** agentapi as its child (stdin ``/dev/null``: agentapi would read a pipe to its
   end), forwarding SIGTERM, SIGINT, SIGHUP and SIGUSR1 to it, and exiting with its status.
   As a container's PID 1 it also reaps the orphans that become its children (see
   :func:`wait_reaping`).
4. **Losing nothing**: with ``--save-interval S`` it follows agentapi's own event stream
   (``GET /events`` on the ``--port`` of the command) and sends agentapi SIGUSR1 (save the
   conversation to its state file) at once after a change, then at most once every ``S``
   seconds while changes go on: a process killed without warning (OOMKilled, a dead node)
   loses at most ``S`` seconds of conversation.

It needs the standard library only: agent images hold agentproxy without its dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import restore, waiting as waiting_vars
from .firstmessage import FIRST_MESSAGE_TIMEOUT, agent_stable, saved_user_messages, send_first_message
from .launch import AgentLaunch

ENTRY_MODULE = "agentproxy.launcher"
TOKEN_VARIABLE = "AGENTPROXY_BINDING_TOKEN"
"""The variable a member's token may come in (removed from the environment at once)."""
BOUND_VARIABLE = "AGENTPROXY_BOUND"
"""Set to ``1`` in the environment of a claimed member's container (k8s mode, from its
ConfigMap): the environment is its binding already, and a container that restarts after
its claim starts at once, as a cold agent does, rather than wait for a binding again."""
BIND_PATH = "/bind"
HEALTH_PATH = "/healthz"
MAX_BINDING = 1024 * 1024
"""The largest binding body accepted (bytes): 100 variables of 32 KiB and a first message fit."""
REQUEST_TIMEOUT = 10.0
"""Seconds a connection to the binding listener may take to send its request."""
REAP_INTERVAL = 1.0
"""Seconds between two looks for ended orphans, as a container's PID 1."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AGENTAPI_HOST = "localhost"  # the Host agentapi answers (agentproxy.launch.AGENTAPI_HOST)
INITIAL_PROMPT_VARIABLE = "AGENTAPI_INITIAL_PROMPT"  # agentproxy.launch.INITIAL_PROMPT_VARIABLE


class BindingError(ValueError):
    """A binding body that is not ``{"env": {NAME: text}}``."""


def parse_binding(body: bytes) -> dict[str, str]:
    """The variables of a binding body, or :class:`BindingError` naming what is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BindingError("the body must be JSON") from None
    if not isinstance(data, dict) or set(data) - {"env"}:
        raise BindingError('the body must be {"env": {NAME: value}}')
    env = data.get("env", {})
    if not isinstance(env, dict):
        raise BindingError("env: must be an object of names to strings")
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise BindingError(f"env.{name[:40]}: must be a letter or '_' followed by letters, digits or '_'")
        if not isinstance(value, str) or "\x00" in value or not _utf8(value):
            raise BindingError(f"env.{name}: must be UTF-8 text without NUL characters")
    return dict(env)


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no process can be given it
        return False
    return True


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    if not header or not header.startswith("Bearer ") or not token:
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


class BindingListener:
    """Serves ``POST /bind`` until one request with the token binds; then closes."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.token = token
        self.binding: dict[str, str] | None = None
        self.bound = threading.Event()
        self.ready = threading.Event()
        """Set once a claim finds what it needs (a pre-started member: once its agent is stable)."""
        self.ready.set()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT  # a client that sends nothing does not hold a thread for ever
            server_version = "agentproxy-launcher"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                pass  # nothing of a request is logged: a binding holds secrets

            def _answer(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path == HEALTH_PATH:
                    state = "bound" if listener.bound.is_set() else "waiting" if listener.ready.is_set() else "starting"
                    self._answer(200, {"state": state})
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                if self.path != BIND_PATH:
                    self._answer(404, {"error": "not found"})
                    return
                if not token_matches(self.headers.get("Authorization"), listener.token):
                    self._answer(401, {"error": "a member's token is required"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or "-1")
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BINDING:
                    self._answer(413 if length > MAX_BINDING else 411,
                                 {"error": f"a binding is a body of at most {MAX_BINDING} bytes with Content-Length"})
                    return
                try:
                    env = parse_binding(self.rfile.read(length))
                except BindingError as exc:
                    self._answer(400, {"error": str(exc)})
                    return
                with listener.lock:
                    if listener.bound.is_set():
                        self._answer(409, {"error": "already bound"})
                        return
                    listener.binding = env
                    listener.bound.set()
                self._answer(200, {"bound": True})

            def do_PUT(self) -> None:
                self._answer(405, {"error": "only POST /bind"})

            do_DELETE = do_PATCH = do_PUT

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # Polled often: closing the listener waits for the poll, and a claim waits for nothing else.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="binding", daemon=True)

    def start(self) -> None:
        """Listen in a thread."""
        self._thread.start()

    def wait(self, timeout: float | None = None) -> dict[str, str] | None:
        """The binding once one arrived (None after ``timeout``)."""
        self.bound.wait(timeout)
        return self.binding

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


def agentapi_port(command: Sequence[str]) -> int | None:
    """The ``--port`` of an ``agentapi server`` command line (None when it has none)."""
    argv = list(command)
    end = argv.index("--") if "--" in argv else len(argv)
    for i, arg in enumerate(argv[:end]):
        if arg == "--port" and i + 1 < end and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return None


def agentapi_state_file(command: Sequence[str]) -> str | None:
    """The ``--state-file`` of an ``agentapi server`` command, or None."""
    for i, arg in enumerate(command):
        if arg == "--state-file" and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith("--state-file="):
            return arg[len("--state-file="):]
    return None


class Saver:
    """Sends the child SIGUSR1 at once after a change, then at most once per ``interval``;
    none before ``restored()`` says the saved conversation is back: agentapi saves what it
    holds, and a save before it has loaded its state file would overwrite that file with the
    bare startup screen (a restarted pod would lose its conversation)."""

    def __init__(self, child: subprocess.Popen[bytes], interval: float,
                 restored: Callable[[], bool] | None = None) -> None:
        self.child = child
        self.interval = interval
        self.restored = restored
        self._restored = restored is None
        self.dirty = threading.Event()
        self.saves = 0
        self._done = threading.Event()

    def changed(self) -> None:
        """The conversation changed."""
        self.dirty.set()

    def run(self) -> None:
        """Save until the child ends (a thread's target)."""
        while not self._done.is_set():
            if not self.dirty.wait(0.5):
                continue
            if self.child.poll() is not None:
                return
            if not self._restored:
                if self.restored is not None and not self.restored():
                    self._done.wait(0.5)  # the change stays pending until the state is back
                    continue
                self._restored = True
            self.dirty.clear()
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signal.SIGUSR1)
                self.saves += 1
            self._done.wait(self.interval)  # changes meanwhile wait for the next save

    def stop(self) -> None:
        """End :meth:`run`."""
        self._done.set()


def follow_events(port: int, saver: Saver, child: subprocess.Popen[bytes], retry: float = 0.5) -> None:
    """Read agentapi's ``GET /events`` on ``port`` while the child runs, telling ``saver`` of
    every live message and every change of status (the replay on connect is not a change)."""
    while child.poll() is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=None)
        try:
            conn.request("GET", "/events", headers={"Host": AGENTAPI_HOST, "Accept": "text/event-stream"})
            response = conn.getresponse()
            if response.status != 200:
                raise OSError(f"GET /events answered {response.status}")
            replaying, status, name = True, None, None
            for raw in response:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:") and name is not None:
                    if name == "message_update" and not replaying:
                        saver.changed()
                    elif name == "status_change":
                        replaying = False
                        with contextlib.suppress(ValueError):
                            new = json.loads(line[5:]).get("status")
                            if new != status:
                                status = new
                                saver.changed()
                elif not line:
                    name = None
        except (OSError, http.client.HTTPException, AttributeError):
            pass
        finally:
            conn.close()
        if child.poll() is None:
            threading.Event().wait(retry)


def _ready_once_stable(listener: BindingListener, port: int, child: subprocess.Popen[bytes],
                       timeout: float = FIRST_MESSAGE_TIMEOUT) -> None:
    """A pre-started member waits (says ``starting``) until its agent is stable the first time
    (a thread's target): a claim then finds a program ready for its first message."""
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline and not listener.bound.is_set():
        if agent_stable(port):
            listener.ready.set()
            return
        threading.Event().wait(0.1)


def wrapped(launch: AgentLaunch, *, save_interval: float, claude_home: bool = False,
            permission_mode: str | None = None, extra_env: Mapping[str, str] | None = None,
            waiting: tuple[str, str] | None = None, binding: tuple[str, int, str] | None = None,
            prestart: bool = False) -> AgentLaunch:
    """``launch`` behind the launcher, as a container runs it: agentapi saved within
    ``save_interval`` seconds of every change, signals forwarded, a Claude Code home prepared
    on the volume first when ``claude_home``; ``extra_env`` joins the variables under the
    launch's own. ``waiting`` (the URL the hooks report to and the file of the pod's token,
    neither a secret): the Claude home gets the hooks that report ``waiting_input`` (see
    :mod:`agentproxy.waiting`). ``binding`` (host, port and token file of a pool member): it
    waits for its binding there first, or, ``prestart``, while the agent runs already."""
    args = ["-m", ENTRY_MODULE, "--save-interval", f"{save_interval:g}", "--work-dir", launch.work_dir]
    if binding is not None:
        host, port, token_file = binding
        args += ["--bind", f"{host}:{port}", "--token-file", token_file, *(["--prestart"] if prestart else [])]
        launch = dataclasses.replace(launch, binding_port=port)
    waiting_env: dict[str, str] = {}
    if claude_home:
        args.append("--claude-home")
        if permission_mode is not None:
            args += ["--permission-mode", permission_mode]
        if waiting is not None:
            args.append("--waiting-hooks")
            waiting_env = dict(zip((waiting_vars.URL_VARIABLE, waiting_vars.TOKEN_VARIABLE), waiting, strict=True))
    env = {**(extra_env or {}), **waiting_env, **launch.env}
    return dataclasses.replace(launch, program="python3", args=(*args, "--", launch.program, *launch.args), env=env)


def wait_reaping(child: subprocess.Popen[bytes], interval: float = REAP_INTERVAL) -> int:
    """Wait for ``child`` while reaping every other process that ends meanwhile; its status.

    In a container the launcher is PID 1: every orphan (a tool the coding agent started whose
    parent died first) becomes its child, and one nobody waits for stays a zombie, holding a
    process table entry until the pod ends. The child itself is left to ``Popen`` (the saver's
    threads poll it too), so this looks every ``interval`` seconds rather than blocking in a
    wait for any child, which could outlast the agent."""
    while True:
        try:
            code: int | None = child.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            code = None
        reap_orphans(keep=child.pid)
        if code is not None:
            return code


def reap_orphans(keep: int) -> int:
    """Reap every child that has ended, but ``keep``; how many were reaped."""
    reaped = 0
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # no child at all
            return reaped
        if ended is None or ended.si_pid == keep:  # none ended, or the agent's own is first
            return reaped
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ended.si_pid, 0)
            reaped += 1


def _read_token(path: str | None) -> str:
    token = os.environ.pop(TOKEN_VARIABLE, "")
    if path:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    return token


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python3 -m {ENTRY_MODULE}",
                                     description="Run an agent's agentapi: bound late when warm, saved after changes.")
    parser.add_argument("--bind", metavar="HOST:PORT", help="wait for POST /bind here before starting")
    parser.add_argument("--token-file", metavar="FILE", help=f"the member's token (else ${TOKEN_VARIABLE})")
    parser.add_argument("--prestart", action="store_true",
                        help="with --bind: start the agent at once; the binding brings its first message")
    parser.add_argument("--save-interval", type=float, default=0.0, metavar="S",
                        help="ask agentapi to save within S seconds of every change (0: never)")
    parser.add_argument("--work-dir", metavar="DIR", help="the agent's working directory")
    parser.add_argument("--claude-home", action="store_true", help="prepare a Claude Code home in DIR first")
    parser.add_argument("--permission-mode", metavar="MODE", help="Claude Code's permissions.defaultMode")
    parser.add_argument("--waiting-hooks", action="store_true",
                        help="give the Claude Code home the hooks that report when the agent waits for its user")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- agentapi server ...")
    return parser


class _Signals:
    """Signals that arrive before the child runs are kept, then forwarded to it; after, at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.pending: list[int] = []
        self.child: subprocess.Popen[bytes] | None = None
        for sig in FORWARDED:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.child is None:
            if signum != signal.SIGUSR1:  # a save with nothing running saves nothing; the others stop
                self.pending.append(signum)
                self.stop.set()
            return
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(signum)

    def forward_to(self, child: subprocess.Popen[bytes]) -> None:
        """From now on signals go to ``child``, those that came meanwhile first."""
        self.child = child
        for signum in self.pending:
            self._handle(signum, None)


def _listen(address: str, token_file: str | None) -> BindingListener | int:
    """A started binding listener on ``address``; 1 (after one line on stderr) when it cannot listen."""
    try:
        host, _, port = address.rpartition(":")
        token = _read_token(token_file)
        if not token:
            raise OSError("no token: give --token-file or $" + TOKEN_VARIABLE)
        listener = BindingListener(host or "127.0.0.1", int(port), token)
    except (OSError, ValueError) as exc:
        print(f"agentproxy: error: cannot wait for a binding on {address}: {exc}", file=sys.stderr)
        return 1
    listener.start()
    print(f"agentproxy: waiting for a binding on {address}", file=sys.stderr, flush=True)
    return listener


def _await_binding(listener: BindingListener, token_file: str | None, stop: Callable[[], bool]) -> dict[str, str] | None:
    """The binding's variables once it came; None when ``stop()`` said so or the token went first."""
    ticks = 0
    while not stop() and listener.wait(0.2) is None:
        ticks += 1
        if token_file and ticks % 5 == 0 and not os.path.exists(token_file):
            # Its token was taken away (k8s mode: the Secret is deleted once the member is
            # claimed): a binding that never came must not be waited for. Started again, a
            # claimed member's container finds its binding in its environment.
            print("agentproxy: the token is gone; no binding is waited for any more", file=sys.stderr, flush=True)
            threading.Thread(target=listener.close, name="binding-close", daemon=True).start()
            return None
    # Closed beside the start of the agent rather than before it (a second binding is refused
    # with 409 meanwhile).
    threading.Thread(target=listener.close, name="binding-close", daemon=True).start()
    if listener.binding is not None:
        print(f"agentproxy: bound ({len(listener.binding)} variables)", file=sys.stderr, flush=True)
    return listener.binding


def _wait_for_binding(address: str, token_file: str | None, signals: _Signals) -> dict[str, str] | None | int:
    """The binding's variables; None when told to stop while waiting; 1 when it cannot listen
    or its token went away."""
    listener = _listen(address, token_file)
    if isinstance(listener, int):
        return listener
    binding = _await_binding(listener, token_file, signals.stop.is_set)
    return 1 if binding is None and not signals.stop.is_set() else binding


def _first_message_later(listener: BindingListener, token_file: str | None, port: int | None,
                         child: subprocess.Popen[bytes], key_file: str | None = None) -> None:
    """A pre-started member: wait for the binding while the agent runs, write its key where
    the agent's ``apiKeyHelper`` reads it, then hand its first message to agentapi (a thread's
    target)."""
    binding = _await_binding(listener, token_file, lambda: child.poll() is not None)
    if binding is None and child.poll() is None:
        # Its token went away unbound (k8s mode: claimed, its binding never reached it; local
        # mode: the proxy's data is gone): the agent ends, and a container that starts again
        # starts bound from its environment.
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        return
    if binding and key_file is not None:
        try:
            _write_key(key_file, binding)
        except OSError as exc:
            print(f"agentproxy: error: cannot write the agent's key: {exc.strerror or exc}", file=sys.stderr, flush=True)
    text = (binding or {}).get(INITIAL_PROMPT_VARIABLE)
    if text and port is not None:
        _send_first_message_logged(port, text, child)


def _send_first_message_logged(port: int, text: str, child: subprocess.Popen[bytes]) -> None:
    if send_first_message(port, text, child):
        print("agentproxy: the first message was handed to the running agent", file=sys.stderr, flush=True)
    elif child.poll() is None:
        print("agentproxy: error: agentapi never took the first message", file=sys.stderr, flush=True)


KEY_VARIABLE = "ANTHROPIC_API_KEY"


def _claude_home(work_dir: str, permission_mode: str | None, env: dict[str, str],
                 waiting_hooks: bool = False, key_file: str | None = None) -> dict[str, str] | None:
    """The variables of a Claude Code agent whose home is now prepared (None once the error
    is printed): the key may have come with the binding, so ``env`` is the environment meanwhile.
    ``key_file``: the home's ``apiKeyHelper`` prints that file (a pre-started member's key)."""
    from .agenthome import QUIET_ENV, key_file_helper, prepare_or_report
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        home = prepare_or_report(work_dir, home=None, api_key_env=KEY_VARIABLE,
                                 permission_mode=permission_mode, waiting_hooks=waiting_hooks,
                                 api_key_helper=None if key_file is None else key_file_helper(key_file))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return None if home is None else {"HOME": home, **QUIET_ENV}


@dataclasses.dataclass
class _Start:
    """How this start goes: the variables the command gets, and for a pre-started member its
    listener (the binding comes while the agent runs) or the first message it still owes."""

    env: dict[str, str]
    listener: BindingListener | None = None
    first_message: str | None = None
    key_file: str | None = None
    """A pre-started Claude Code member's key file (its ``apiKeyHelper`` prints it)."""


def _write_key(path: str, env: Mapping[str, str]) -> None:
    from .privatefile import write_private
    if env.get(KEY_VARIABLE):
        write_private(path, env[KEY_VARIABLE])


def _prepare_start(args: argparse.Namespace, command: Sequence[str], port: int | None,
                   signals: _Signals) -> _Start | int:
    """Wait for the binding when asked (not when pre-started or bound before); an exit status
    when the command must not run."""
    start = _Start(dict(os.environ))
    start.env.pop(TOKEN_VARIABLE, None)
    if args.bind and start.env.get(BOUND_VARIABLE) == "1":
        print("agentproxy: bound before this start; starting at once", file=sys.stderr, flush=True)
        if args.prestart:
            # A pre-started member's first message went to agentapi through POST /message, never
            # as its initial prompt: given the prompt again, agentapi (whose state file has none)
            # would send it a second time. It is sent here only if the conversation lacks it.
            start.first_message = start.env.pop(INITIAL_PROMPT_VARIABLE, None)
            if saved_user_messages(agentapi_state_file(command)) > 0:
                start.first_message = None
    elif args.prestart:
        listener = _listen(args.bind, args.token_file)
        if isinstance(listener, int):
            return listener
        listener.ready.clear()
        start.listener = listener
    elif args.bind:
        binding = _wait_for_binding(args.bind, args.token_file, signals)
        if not isinstance(binding, dict):
            return 0 if binding is None else binding
        start.env.update(binding)
    if args.prestart and args.claude_home:
        # Outside the volume, in a directory only this process's user can enter: the key is
        # never on the agent's disk, and a container that starts again writes it again.
        start.key_file = os.path.join(tempfile.mkdtemp(prefix="agentproxy-key-"), "api-key")
        _write_key(start.key_file, start.env)
    if args.claude_home:
        claude = _claude_home(args.work_dir, args.permission_mode, start.env, args.waiting_hooks, start.key_file)
        if claude is None:
            if start.key_file is not None:
                shutil.rmtree(os.path.dirname(start.key_file), ignore_errors=True)
            return 1
        start.env.update(claude)
    return start


def _follow_binding(start: _Start, args: argparse.Namespace, port: int | None,
                    child: subprocess.Popen[bytes]) -> None:
    """A pre-started member's threads: ready once stable, then the first message of its binding."""
    if port is None:
        return
    if start.listener is not None:
        threading.Thread(target=_ready_once_stable, args=(start.listener, port, child), name="stable",
                         daemon=True).start()
        threading.Thread(target=_first_message_later, args=(start.listener, args.token_file, port, child,
                                                            start.key_file), name="first-message", daemon=True).start()
    elif start.first_message:
        threading.Thread(target=_send_first_message_logged, args=(port, start.first_message, child),
                         name="first-message", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Wait for a binding when asked, prepare, run the command and keep its conversation saved;
    the exit status is the command's. A failure before it runs is one line on stderr, status 1."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required after --")
    if args.claude_home and not args.work_dir:
        parser.error("--claude-home needs --work-dir")
    port = agentapi_port(command)
    if args.prestart and (not args.bind or port is None):
        parser.error("--prestart needs --bind and agentapi's --port")
    signals = _Signals()
    start = _prepare_start(args, command, port, signals)
    if isinstance(start, int):
        return start
    try:
        child = subprocess.Popen(command, env=start.env, stdin=subprocess.DEVNULL, cwd=args.work_dir or None)
    except OSError as exc:
        print(f"agentproxy: error: cannot run {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    signals.forward_to(child)
    _follow_binding(start, args, port, child)
    saver = None
    if args.save_interval > 0 and port is not None:
        state_file = agentapi_state_file(command)
        restored = None if state_file is None else (
            lambda: restore.check(port, state_file, host=AGENTAPI_HOST) is None)
        saver = Saver(child, args.save_interval, restored)
        threading.Thread(target=saver.run, name="saver", daemon=True).start()
        threading.Thread(target=follow_events, args=(port, saver, child), name="events", daemon=True).start()
    code = wait_reaping(child) if os.getpid() == 1 else child.wait()
    if saver is not None:
        saver.stop()
    if start.key_file is not None:  # the key goes with the agent
        shutil.rmtree(os.path.dirname(start.key_file), ignore_errors=True)
    return _exit_status(code)


if __name__ == "__main__":
    sys.exit(main())
