"""The typed settings schema.

Every setting is declared here, once, with its default and what it means. The
config file, the ``AGENTAPI_*`` environment variables and ``--set`` overrides
are all resolved against these dataclasses (see :mod:`agentproxy.settings.load`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

CLAUDE_PERMISSION_MODES = ("default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions")
"""The values of Claude Code's ``permissions.defaultMode`` (``agents.claude.permission_mode``)."""

AGENT_PORT = 3284
"""The port agentapi listens on inside an agent's pod (agentapi's own default)."""


def _default_agent_commands() -> Dict[str, List[str]]:
    return {
        "claude": ["claude"],
        "codex": ["codex"],
        "goose": ["goose", "session"],
        "aider": ["aider"],
        "gemini": ["gemini"],
        # A tiny REPL shipped with agentproxy, so everything can be tried
        # without credentials for a real model.
        "echo": ["python3", "-m", "agentproxy.demo_agent"],
    }


@dataclass
class ApiKeySettings:
    """One API key, stored as the SHA-256 hex digest of the key (never the key)."""

    name: str = ""
    """Who holds the key; agents created with it are owned by this name."""

    sha256: str = ""
    """``printf %s "$KEY" | sha256sum``: 64 hex digits."""

    admin: bool = False
    """An admin key sees and reaches every agent; others only their own (and those shared
    with their groups)."""

    user: Optional[str] = None
    """The user the key acts for: the owner of the agents it creates. Unset: the key's ``name``
    (as before users existed), so several keys of one user share their agents only when they
    name the same ``user``. Example: ``alice``."""

    groups: List[str] = field(default_factory=list)
    """Groups of the key's user besides those ``teams.groups`` gives them. Example: ``[ml]``."""


@dataclass
class OidcSettings:
    """Sign-in with an OpenID Connect provider (see :mod:`agentproxy.teams.oidc`): the dashboard
    signs people in with the authorization code flow and PKCE, ``agentproxy login`` does the same
    from the command line, and the API accepts the provider's ID and access tokens (JWTs) as
    bearer tokens beside ``api_keys``. Off while ``issuer`` is unset."""

    issuer: Optional[str] = None
    """The provider's issuer URL; its ``/.well-known/openid-configuration`` is read at the first
    sign-in or token. Example: ``https://login.example.com/realms/team``."""

    client_id: Optional[str] = None
    """The dashboard's client at the provider (required with ``issuer``). Example: ``agentproxy``."""

    client_secret_env: Optional[str] = None
    """The environment variable of the proxy that holds the dashboard client's secret (a
    confidential client); unset: a public client (PKCE alone). The secret itself is never a
    setting. Example: ``AGENTPROXY_OIDC_SECRET``."""

    cli_client_id: Optional[str] = None
    """The public client ``agentproxy login`` uses (PKCE, a loopback redirect); unset:
    ``client_id``. Example: ``agentproxy-cli``."""

    audiences: Optional[str] = None
    """Comma-separated ``aud`` values a bearer token may carry; unset: ``client_id`` and
    ``cli_client_id``. Example: ``agentproxy,agentproxy-cli``."""

    username_claim: str = "preferred_username"
    """The claim that names the user (the owner of the agents they create). Example: ``email``."""

    groups_claim: str = "groups"
    """The claim that lists the user's groups (added to those of ``teams.groups``). Example: ``roles``."""

    scopes: str = "openid profile email"
    """Space-separated scopes asked for at sign-in. Example: ``openid profile email groups``."""

    public_url: Optional[str] = None
    """The proxy's URL as browsers reach it (the callback is ``<public_url>/auth/callback``);
    unset: the URL each sign-in request came to. Example: ``https://agents.example.com``."""

    jwks_cache: float = 300.0
    """How long the provider's signing keys are kept before they are read again. Example: ``10m``."""

    jwks_min_refresh: float = 10.0
    """The least time between two readings of the keys for tokens signed by an unknown key
    (a rotated key is found at once; a flood of forged key ids makes no flood of requests)."""

    leeway: float = 10.0
    """Clock skew allowed when checking a token's ``exp`` and ``nbf``. Example: ``30s``."""


@dataclass
class ServerSettings:
    """The HTTP API server."""

    host: str = "127.0.0.1"
    """Address to bind. Binding to anything but loopback requires API keys."""

    port: int = 8080
    """TCP port of the HTTP API. Example: ``8080``."""

    api_keys: List[ApiKeySettings] = field(default_factory=list)
    """Keys accepted as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; none
    means no authentication. Example: ``[{name: alice, sha256: 9f86d0..., admin: true}]``."""

    oidc: OidcSettings = field(default_factory=OidcSettings)
    """Sign-in with an OpenID Connect provider; off by default."""

    allow_unauthenticated_remote: bool = False
    """Allow binding a non-loopback ``host`` without API keys (anyone who can reach it controls the agents)."""

    max_body: int = 1024 * 1024
    """Largest request body of the API routes, in bytes; a larger one is answered 413. The
    agent API proxy streams bodies and is not bound by it. Example: ``262144``."""

    other_mode_agents: str = "refuse"
    """What ``serve`` does at start-up when agents of the other mode still run (live
    processes in ``local_mode.data_dir``'s state file when starting in k8s mode,
    agentproxy's objects in ``k8s_mode.namespace`` when starting in local mode):
    ``refuse`` to start, or ``warn`` and start. Either way it says which agents and
    what to do; nothing is deleted."""


@dataclass
class ClaudeSettings:
    """Claude Code agents (every agent type whose program is ``claude``)."""

    api_key_env: str = "ANTHROPIC_API_KEY"
    """Where the model's API key is: in local mode the environment variable of the proxy that
    holds it, in k8s mode the key of the Secret ``k8s_mode.secret_name`` that holds it. The
    agent gets it as ``ANTHROPIC_API_KEY`` (in k8s mode a ``secretKeyRef``), and its prepared
    home approves it. The key itself is never a setting, never in an agent's spec, JSON, a
    ConfigMap or logs. Example: ``TEAM_ANTHROPIC_KEY``."""

    base_url: Optional[str] = None
    """The model's endpoint, given to agents as ``ANTHROPIC_BASE_URL``: a gateway or proxy of
    the team's; unset uses Anthropic's API. Example: ``https://llm-gateway.example.com``."""

    permission_mode: Optional[str] = None
    """``permissions.defaultMode`` of the agents' Claude Code: ``default``, ``acceptEdits``,
    ``plan``, ``dontAsk`` (only tools allowed beforehand run, e.g. with ``--allowedTools`` in
    ``agents.commands``), ``auto`` or ``bypassPermissions`` (refused by Claude Code as root).
    Unset leaves Claude Code's own default. An agent cannot answer a permission question
    unattended: choose one that suits the tools it should run."""


@dataclass
class AgentSettings:
    """Agent types shared by both modes."""

    default_type: str = "echo"
    """Agent type used when a create request names none. Example: ``claude``."""

    commands: Dict[str, List[str]] = field(default_factory=_default_agent_commands)
    """Command (argv) that agentapi wraps, by agent type. In k8s mode the
    command must exist in ``k8s_mode.image``. Example: ``{aider: [aider, --model, sonnet]}``."""

    first_message_timeout: float = 120.0
    """How long after an agent is ready its first message (``message`` of the create
    request) may take to be delivered; agentapi sends it once the agent shows its
    prompt. Past this the agent's reason is ``FirstMessagePending`` until it is
    delivered. A duration: seconds, or ``500ms``, ``30s``, ``2m``, ``1h``."""

    max_per_session: int = 1000
    """Most agents one session may hold; a create beyond it is answered 429. ``0``: no limit."""

    max_per_owner: int = 1000
    """Most agents one API key (owner) may hold across sessions; a create beyond it is answered
    429. Agents created without keys have no owner. ``0``: no limit."""

    max_concurrent_creates: int = 64
    """Creates carried out at the same time; further ones wait their turn."""

    max_queued_creates: int = 1000
    """Creates that may wait for their turn; a create beyond them is answered 429 with
    ``Retry-After`` at once."""

    idle_timeout: Optional[float] = None
    """Idle culling; off when unset. An agent that is ready and stable (agentapi is not
    working) and has had no proxied request and no new message for this long is
    suspended: it keeps its data and resumes on its next request. Example: ``30m``."""

    max_age: Optional[float] = None
    """Off when unset. Agents older than this (since their creation) are deleted, their
    data kept as by a delete without purge. Example: ``168h``."""

    resume_wait: float = 0.0
    """How long a proxied request to a suspended agent waits for it to be ready again and is
    then forwarded. ``0`` answers 503 with ``Retry-After`` at once while the agent resumes.
    Example: ``30s``."""

    claude: ClaudeSettings = field(default_factory=ClaudeSettings)
    """Claude Code agents: the model's key and endpoint, the permission mode."""


@dataclass
class PortRange:
    """An inclusive range of TCP ports."""

    start: int = 9000
    """First port (inclusive). Example: ``9000``."""

    end: int = 9999
    """Last port (inclusive). Example: ``9999``."""


@dataclass
class SupervisionSettings:
    """How local agents are supervised: readiness, restarts, stopping and sampling. Durations
    are seconds, or a number with ``ms``, ``s``, ``m`` or ``h``."""

    start_timeout: float = 30.0
    """How long agentapi has to answer ``GET /status`` after it was started; then the agent fails.
    Within the same time it is to load its saved conversation (see :mod:`agentproxy.restore`);
    one that answers without it is ready then, with reason ``ConversationNotRestored``."""

    stop_grace: float = 10.0
    """Between SIGTERM and SIGKILL when an agent is deleted."""

    leftover_grace: float = 2.0
    """The same for processes of a tree whose agentapi already exited."""

    backoff_initial: float = 1.0
    """The first delay before an agent whose agentapi ended is started again; it doubles with
    every further end, as Kubernetes' CrashLoopBackOff does."""

    backoff_max: float = 60.0
    """The longest such delay."""

    stable_after: float = 60.0
    """A run this long resets the delay and the count of quick failures."""

    crash_loop_failures: int = 5
    """Ends within ``crash_loop_window`` after which the agent is ``failed`` (reason
    ``CrashLoopBackOff``) instead of started again."""

    crash_loop_window: float = 300.0
    """The window in which ``crash_loop_failures`` are counted."""

    probe_interval_min: float = 0.025
    """Readiness is probed this often at first (every probe interval adds to an agent's time to ready)."""

    probe_fast_for: float = 2.0
    """For this long; then less and less often, down to ``probe_interval_max``."""

    probe_interval_max: float = 0.25
    """The longest interval between two readiness probes."""

    probe_timeout: float = 2.0
    """How long one readiness probe may take."""

    launch_concurrency: int = 4
    """Agents spawned at the same time, at most (until each one's program is executing)."""

    sample_interval: float = 1.0
    """Between samples of CPU and memory (and checks of the memory limit and log sizes)."""

    disk_interval: float = 30.0
    """Between measurements of a work directory (a walk of the whole tree)."""


@dataclass
class LocalModeSettings:
    """Local mode: each agent is a supervised ``agentapi`` process."""

    agentapi_binary: str = "agentapi"
    """Path or name (looked up on PATH) of the agentapi executable."""

    ports: PortRange = field(default_factory=PortRange)
    """Ports handed to agentapi servers; ports in use by anything else are skipped."""

    data_dir: str = "~/.local/share/agentproxy"
    """Per-agent work directories, logs and the supervisor's state file live here."""

    state_save_interval: float = 2.0
    """After an agent's conversation changes, its agentapi is asked (SIGUSR1) to save
    it to the state file in its work directory within this long: a SIGKILL of
    agentapi loses at most about this much conversation. A duration (``2s``)."""

    agent_nice: int = 10
    """The CPU priority (nice value, 0-19) agents run at: below the proxy's, so that agents
    busy or many (an idle agentapi redraws its terminal all the time) never starve the proxy,
    nor a restarted one that is loading its agents. 0 runs them at the proxy's priority."""

    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    """Timings of supervision: readiness, restarts, stopping, sampling."""


@dataclass
class ResourceSettings:
    """Requests and limits of each agent (Kubernetes quantities)."""

    cpu_request: str = "100m"
    """CPU requested for each agent. Examples: ``100m``, ``0.5``, ``2``."""

    cpu_limit: str = "500m"
    """CPU limit of each agent; at least ``cpu_request``."""

    memory_request: str = "256Mi"
    """Memory requested for each agent. Examples: ``256Mi``, ``1Gi``."""

    memory_limit: str = "512Mi"
    """Memory limit of each agent; at least ``memory_request``. Local mode enforces it too."""

    storage_size: str = "1Gi"
    """Size of each agent's data volume (its PVC). Example: ``10Gi``."""


@dataclass
class K8sApiSettings:
    """How the proxy talks to the Kubernetes API server and how it tells that the server
    does not answer. Durations are seconds, or a number with ``ms``, ``s``, ``m`` or ``h``."""

    request_timeout: float = 10.0
    """The longest one API call may take; then it fails and the request that needed it is
    answered 503 (the library's own default would be 30 seconds)."""

    check_interval: float = 1.0
    """How often the proxy checks that the API server answers (a list of at most one object)."""

    unready_after: float = 5.0
    """Once the API server has not answered for this long, ``/readyz`` answers 503 and creates
    fail at once with 503 instead of waiting for ``request_timeout``; the first answer after
    that makes the proxy ready again (watches are resumed at once)."""

    retry_after: float = 5.0
    """The ``Retry-After`` of a 503 answered because the API server does not answer."""

    max_in_flight: int = 8
    """API calls under way at once at most (watches aside); more wait their turn. A burst of
    creates goes fastest when its calls reuse a few kept-alive connections: beyond about a
    dozen at once, the HTTP client's pool closes and reopens connections, each a TLS
    handshake for the proxy and the API server, on a server that is busy already."""

    watch_silence: float = 90.0
    """A watch that stays silent this long is restarted (the API server's bookmarks keep a
    healthy watch talking about once a minute)."""


@dataclass
class K8sModeSettings:
    """Kubernetes mode: each agent is a StatefulSet, a headless Service, a ConfigMap and a PVC."""

    enabled: bool = False
    """Run agents on Kubernetes instead of as local processes."""

    namespace: str = "agentapi-proxy"
    """Namespace of every agent object (a DNS-1123 label)."""

    image: str = "agentapi-proxy:latest"
    """Container image with agentapi and the agent programs."""

    image_pull_policy: str = "IfNotPresent"
    """``Always``, ``IfNotPresent`` or ``Never``."""

    resources: ResourceSettings = field(default_factory=ResourceSettings)
    """Default requests and limits; a create request may lower or raise them up to these limits."""

    storage_class: Optional[str] = None
    """StorageClass of the data volumes; unset uses the cluster's default class."""

    secret_name: Optional[str] = None
    """An existing Secret whose keys become the agent's environment (API keys and
    tokens). Only its name is rendered, never its content. Example: ``agent-credentials``."""

    service_account: Optional[str] = None
    """ServiceAccount of the agent pods; unset uses the namespace's ``default``."""

    work_dir: str = "/home/agent/work"
    """Where the data volume is mounted in the container; the agent's working directory."""

    run_as_user: int = 1000
    """Non-root UID (and GID) the agent container runs as."""

    pvc_retention_when_deleted: str = "Retain"
    """StatefulSet PVC retention when the StatefulSet is deleted: ``Retain`` or ``Delete``.
    ``Retain`` keeps an agent's data until it is deleted with purge."""

    field_manager: str = "agentproxy"
    """Field manager name used for server-side apply."""

    force_conflicts: bool = False
    """Take ownership of fields another manager set (``kubectl apply --force-conflicts``)."""

    pod_address: str = "dns"
    """How the proxy reaches an agent: ``dns`` (the pod's headless-Service name,
    in-cluster) or ``pod_ip`` (the pod IP, for a proxy running outside the cluster)."""

    waiting_url: Optional[str] = None
    """The proxy's URL as agent pods reach it, where a Claude agent's hooks report that it waits
    for its user (``waiting_input``), each report signed by the pod's own ServiceAccount token
    (checked with a TokenReview; see :mod:`agentproxy.backends.k8s.questions`). Unset: k8s mode
    does not detect ``waiting_input``. Example: ``http://agentproxy.agentproxy.svc:8080``."""

    waiting_audience: str = "agentproxy"
    """The audience of the token a pod's hooks present (no other service accepts it)."""

    kubeconfig: Optional[str] = None
    """Kubeconfig file; unset uses in-cluster config or ``$KUBECONFIG``."""

    context: Optional[str] = None
    """Kubeconfig context; unset uses the current context."""

    api: K8sApiSettings = field(default_factory=K8sApiSettings)
    """Timeouts of the API server and how its absence is noticed."""


@dataclass
class AgentapiProxyCompatSettings:
    """The session API of the Go agentapi-proxy (v1.73.0), served beside agentproxy's own
    routes so that its clients (its ``client`` CLI, agentapi-ui, scripts) work unchanged."""

    enabled: bool = False
    """Serve ``POST /start``, ``GET /search``, ``DELETE /sessions/{id}``, ``ANY /{id}/...``
    and ``GET /health``. While on, agent ids that name a route are refused."""

    session: str = "agentapi-proxy"
    """The agentproxy session that holds its sessions: each one is an agent of this
    session, its session id the agent id."""

    agent_type: Optional[str] = None
    """Agent type of the sessions ``/start`` creates; unset uses ``agents.default_type``.
    Example: ``claude`` (the peer always ran Claude Code)."""

    allowed_origins: str = ""
    """Comma-separated browser origins its routes answer CORS requests from, as the
    peer's ``ALLOWED_ORIGINS``; empty allows ``http(s)://localhost`` and
    ``http(s)://127.0.0.1`` on any port. Example: ``https://ui.example.com``."""


@dataclass
class CompatSettings:
    """APIs of other projects that agentproxy can also serve."""

    agentapi_proxy: AgentapiProxyCompatSettings = field(default_factory=AgentapiProxyCompatSettings)
    """The Go agentapi-proxy's session API; off by default."""


@dataclass
class TeamsSettings:
    """Users, groups, agent profiles, credentials, quotas and the audit log of a shared proxy
    (see :mod:`agentproxy.teams`). Values of the ``Any`` leaves are checked by
    :func:`agentproxy.teams.config.parse_teams`."""

    admin_group: Optional[str] = None
    """Members of this group are admins (see and manage every agent), as keys with ``admin: true``
    are. Example: ``platform``."""

    groups: Any = None
    """Members of each group, by user name. Example: ``{ml: [alice, bob], platform: [carol]}``."""

    profiles: Any = None
    """Named agent profiles: ``agent``, ``image``, ``resources``, ``env``, ``idle_timeout``,
    ``instructions`` (the CLAUDE.md/AGENTS.md of the agent's home), ``mcp_servers``,
    ``credentials`` (env name to credential name) and ``groups`` (who may use it; unset: all)."""

    default_profile: Optional[str] = None
    """The profile of a create that names none; unset: the plain ``agents`` settings."""

    quotas: Any = None
    """Limits per user and per group: ``{users: {NAME: Q}, groups: {NAME: Q}, default: Q}``, each
    ``Q`` of ``agents``, ``running`` and ``creating`` (0 or unset: no limit)."""

    audit_log: Optional[str] = None
    """Where one JSON line per create, delete, suspend, resume, share, credential change and
    refused request goes: ``stdout``, or a file path; unset: off."""


@dataclass
class TriggersSettings:
    """Agents started by events and people told of them (see :mod:`agentproxy.triggers` and
    docs/triggers.md). Values of the ``Any`` leaves are checked by
    :func:`agentproxy.triggers.config.parse_triggers`; secrets are never values here, only
    where they are (``secret_env``, ``secret_file``)."""

    hooks: Any = None
    """Inbound webhooks by id (``POST /hooks/ID``): ``scheme`` (``github`` or ``hmac-sha256``),
    ``secret_env``/``secret_file``, ``match`` (``events``, ``repositories``, ``actions``,
    ``labels``, ``when``), ``prompt`` (a Jinja2 template), ``owner``, ``profile``, ``agent``,
    ``session``, ``reuse`` (``none`` or ``issue``), ``max_running``."""

    schedules: Any = None
    """Cron schedules by id: ``cron``, ``timezone``, ``prompt``, ``owner``, ``profile``,
    ``agent``, ``session``, ``overlap`` (``skip`` or ``replace``), ``missed`` (``skip`` or
    ``run_once``)."""

    notifications: Any = None
    """Subscriptions: a list of ``{url | url_env, format: signed | slack, secret_env, events,
    owner, hook, schedule}``; ``events`` of ``waiting_input``, ``ready``, ``failed``, ``deleted``."""

    delivery: Any = None
    """How notifications are sent: ``attempts`` (4), ``backoff`` (``1s``, doubled each time),
    ``timeout`` (``10s``), ``debounce`` (``30s``: at most one message per agent, subscription and
    kind; ``deleted`` always goes)."""

    prompt_max: int = 16384
    """The longest rendered prompt of a hook or schedule, in characters."""


@dataclass
class Settings:
    """All settings of agentproxy."""

    server: ServerSettings = field(default_factory=ServerSettings)
    agents: AgentSettings = field(default_factory=AgentSettings)
    local_mode: LocalModeSettings = field(default_factory=LocalModeSettings)
    k8s_mode: K8sModeSettings = field(default_factory=K8sModeSettings)
    compat: CompatSettings = field(default_factory=CompatSettings)
    teams: TeamsSettings = field(default_factory=TeamsSettings)
    triggers: TriggersSettings = field(default_factory=TriggersSettings)

    pools: Any = None
    """Warm pools (see :mod:`agentproxy.pools`): a list of ``{name, size, agent, resources,
    profile}``; a create that names no id and has a pool's shape takes one of its ready members.
    Example: ``[{name: echo, size: 5, agent: echo}]``; unset: no pools."""

    templates_dir: Optional[str] = None
    """Directory with operator-provided manifest templates (same file names as
    the defaults); unset uses the templates shipped with agentproxy."""
