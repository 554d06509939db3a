"""How an agent is started: one pure description that both modes use.

The local launcher runs exactly :attr:`AgentLaunch.argv` with
:attr:`AgentLaunch.env` in :attr:`AgentLaunch.work_dir`; the templates render
the same arguments into the StatefulSet's container, the same variables into the
ConfigMap, the same port, working directory and readiness check (``launch`` in
their context). Neither writes the command line of agentapi on its own, so the
two modes cannot drift.

What every agent gets:

- ``agentapi server --port P --type T --state-file F -- COMMAND...``: the
  conversation is kept in ``F`` inside the agent's own data (its work directory
  locally, its volume in Kubernetes), so a restarted agent, a re-adopted one and
  a recreated pod come back with their earlier messages.
- readiness only once the conversation is back: agentapi loads its state file a
  moment after it starts answering (see :mod:`agentproxy.restore`); local mode's
  probe and a pod's startup probe (:attr:`AgentLaunch.restored_check`) wait for it.
- ``AGENTAPI_INITIAL_PROMPT`` when the create request had a ``message``:
  agentapi sends it once the agent shows its prompt, records in the state file
  that it did, and never sends it again.
- ``AGENTPROXY_AGENT_ID``, ``AGENTPROXY_SESSION``, ``AGENTPROXY_AGENT_TYPE`` and
  ``AGENTPROXY_AGENT_COMMAND`` for the agent's own use, then the request's ``env``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # the standard library only at run time: agent images run this module's users without
    # agentproxy's dependencies (see agentproxy.agenthome's entry point)
    from .spec import AgentSpec

STATE_DIR = ".agentproxy"
"""Directory inside an agent's work directory that holds what agentproxy keeps there."""
STATE_FILE = "agentapi-state.json"
"""agentapi's conversation state (``--state-file``), inside :data:`STATE_DIR`."""
AGENTAPI_HOST = "localhost"
"""The ``Host`` header agentapi answers (it refuses other hosts with 400 unless configured):
every request of agentproxy to an agent (readiness, events, the proxy) sends it."""
STATUS_PATH = "/status"
"""agentapi answers ``GET /status`` once it serves: the readiness check of both modes."""
INITIAL_PROMPT_VARIABLE = "AGENTAPI_INITIAL_PROMPT"
"""agentapi's own variable for ``--initial-prompt``. An environment variable rather than an
argument: a first message may be long and private, and arguments are visible to every user."""


def state_file(work_dir: str) -> str:
    """Where agentapi keeps the conversation of an agent whose work directory is ``work_dir``."""
    return posixpath.join(work_dir, STATE_DIR, STATE_FILE)


@dataclass(frozen=True)
class AgentLaunch:
    """The process of one agent: program, arguments, environment and paths."""

    program: str
    """The agentapi executable (a name to look up, or an absolute path)."""
    args: tuple[str, ...]
    """Everything after the program: ``server --port ... -- COMMAND...``."""
    env: Mapping[str, str] = field(hash=False)
    """Variables of the agent: agentproxy's own, the first message, then the request's ``env``.
    None of them is a secret (the spec refuses secret-looking names for Kubernetes)."""
    work_dir: str
    """The working directory: the agent's data."""
    state_file: str
    """agentapi's conversation state, inside ``work_dir``."""
    port: int
    """The port agentapi listens on (on every interface: it has no option to choose one)."""
    binding_port: int | None = None
    """The port where the launcher of a warm pool member waits for its binding (k8s mode), else None."""
    host: ClassVar[str] = AGENTAPI_HOST
    status_path: ClassVar[str] = STATUS_PATH

    @property
    def argv(self) -> tuple[str, ...]:
        """The full command line."""
        return (self.program, *self.args)

    @property
    def restored_check(self) -> tuple[str, ...]:
        """The command that exits 0 once agentapi answers with the conversation of its state
        file back (:mod:`agentproxy.restore`), or, for a pool member, while its launcher waits
        for its binding: a pod's startup probe, so that the pod is Ready only then. It needs
        ``python3`` and agentproxy in the image, as the agent image has."""
        check = ("python3", "-m", "agentproxy.restore", "--port", str(self.port), "--state-file", self.state_file,
                 "--host", self.host)
        # A pool member's launcher waits for its binding, maybe for hours: that is its start done.
        return check if self.binding_port is None else (*check, "--waiting-port", str(self.binding_port))


def agent_launch(spec: AgentSpec, *, port: int, work_dir: str, program: str = "agentapi",
                 command: Sequence[str] | None = None) -> AgentLaunch:
    """How ``spec`` is started with agentapi listening on ``port`` and its data in ``work_dir``.

    ``command`` replaces the spec's command with the same program resolved to a path
    (local mode runs programs by absolute path; a pod finds them on its image's PATH).
    """
    argv = tuple(spec.command if command is None else command)
    path = state_file(work_dir)
    args = ("server", "--port", str(port), "--type", spec.agentapi_type, "--state-file", path, "--", *argv)
    env = {
        "AGENTPROXY_AGENT_ID": spec.id,
        "AGENTPROXY_SESSION": spec.session,
        "AGENTPROXY_AGENT_TYPE": spec.type,
        "AGENTPROXY_AGENT_COMMAND": spec.command_line,
    }
    if spec.message:  # agentapi takes an empty prompt for none
        env[INITIAL_PROMPT_VARIABLE] = spec.message
    env.update(spec.env)  # names starting with AGENTAPI_ or AGENTPROXY_ are refused by the spec
    return AgentLaunch(program=program, args=args, env=env, work_dir=work_dir, state_file=path, port=port)
