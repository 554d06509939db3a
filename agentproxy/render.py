"""Render an agent's Kubernetes manifests from the Jinja2 templates.

Templates are the only source of manifests: code passes values, templates
decide the YAML. Values from users and settings go through the ``q`` filter,
which emits a YAML double-quoted scalar, so no newline, ``: ``, ``#``, quote or
``{{`` in a value can change the structure of the document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import jinja2
import yaml

from . import naming, yamlfast, yamlout
from .agenthome import BASE_URL_VARIABLE, KEY_VARIABLE, QUIET_ENV, home_dir, uses_claude
from .launch import AgentLaunch, agent_launch
from .launcher import BOUND_VARIABLE, wrapped
from .pools import POOL_SESSION, member_labels, prestarted_shape, shape_of
from .settings import AGENT_PORT, Settings
from .spec import AgentSpec, fingerprint
from .waiting import REPORT_PATH

TEMPLATES = (
    # (file, kind, name of the object) in apply order: what the StatefulSet uses comes first.
    ("configmap.yaml.j2", "ConfigMap", "configmap"),
    ("service.yaml.j2", "Service", "service"),
    ("pvc.yaml.j2", "PersistentVolumeClaim", "pvc"),
    ("statefulset.yaml.j2", "StatefulSet", "statefulset"),
)

SHARED = ("pvc-spec.j2",)
"""Templates of macros the object templates import: ``pvc_spec``, the data volume's spec, which
the PVC and the StatefulSet's claim template share."""

_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RenderError(ValueError):
    """A template is missing, broken or refers to a value that does not exist,
    or a value may not be rendered (a secret in the ConfigMap)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


def _escape(match: re.Match[str]) -> str:
    ch = match[0]
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


_NEEDS_ESCAPE = re.compile(r'[^\x20-\x7e]|["\\]')
_quoted: dict[str, str] = {}
"""Values already quoted: most (namespace, image, labels, ...) repeat from agent to agent."""


def yaml_quote(value: Any) -> str:
    """Emit ``value`` as a YAML double-quoted scalar that any YAML parser reads back unchanged.

    Printable ASCII is kept; everything else is escaped (``\\n``, ``\\u2028``,
    ``\\U0001F600``), so line breaks of any kind cannot end the scalar.
    """
    text = value if isinstance(value, str) else str(value)
    found = _quoted.get(text)
    if found is None:
        found = f'"{_NEEDS_ESCAPE.sub(_escape, text)}"'
        if len(_quoted) > 10_000:
            _quoted.clear()
        _quoted[text] = found
    return found


def default_templates_dir() -> Path:
    """The templates shipped with agentproxy: inside the installed package (a wheel),
    or at the top of a source checkout."""
    packaged = Path(__file__).resolve().parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=8)
def _environment(templates_dir: str | None) -> jinja2.Environment:
    # Operator templates shadow the defaults file by file, so overriding one
    # template does not mean copying all four.
    search = [str(default_templates_dir())]
    if templates_dir is not None:
        custom = Path(templates_dir).expanduser()
        if not custom.is_dir():
            raise RenderError(f"templates_dir={templates_dir!r}: is not a directory", "templates_dir")
        search.insert(0, str(custom))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["q"] = yaml_quote
    return env


@lru_cache(maxsize=8)
def _compiled(templates_dir: str | None) -> tuple[tuple[jinja2.Template, str, str], ...]:
    """The four templates, compiled once per templates directory (with the macros they share,
    so that a broken one is named at once)."""
    env = _environment(templates_dir)
    for filename in SHARED:
        _load(env, filename)
    return tuple((_load(env, filename), kind, name_key) for filename, kind, name_key in TEMPLATES)


def _load(env: jinja2.Environment, filename: str) -> jinja2.Template:
    try:
        return env.get_template(filename)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.filename or filename} line {exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        searched = cast(jinja2.FileSystemLoader, env.loader).searchpath  # as _environment made it
        raise RenderError(f"template {filename} not found in {', '.join(searched)}") from None


def check_no_secrets(spec: AgentSpec) -> None:
    """Refuse env names that look like credentials: a ConfigMap is readable by anyone
    who can read the namespace, and `render` output ends up in reviews and logs."""
    for name in spec.env:
        if _SECRET_WORDS & set(name.upper().split("_")):
            raise RenderError(
                f"env.{name}: looks like a secret and would be stored in a ConfigMap; put it in the "
                "Secret named by k8s_mode.secret_name instead", f"env.{name}")


def render_agent(settings: Settings, spec: AgentSpec, *, replicas: int = 1,
                 suspension: str | None = None) -> list[dict[str, Any]]:
    """The agent's four manifests as dicts, in apply order: ConfigMap, headless
    Service, PVC, StatefulSet. Raises :class:`RenderError`.

    ``replicas`` and ``suspension`` (the annotation of a suspended agent) are the
    StatefulSet's; the k8s backend's model decides them (a running agent by default).
    """
    check_no_secrets(spec)
    credential_variables: list[str] = []
    if spec.profile is not None:  # its image (and resources, already in the spec) are the profile's
        from .teams.config import teams_of
        from .teams.profiles import profile_settings
        profile = teams_of(settings).profiles.get(spec.profile)
        settings = profile_settings(settings, profile)
        credential_variables = sorted(profile.credentials) if profile is not None else []
    compiled = _compiled(settings.templates_dir)
    names = {**naming.object_names(spec.id), "credentials": f"{naming.statefulset_name(spec.id)}-credentials",
             "binding": binding_secret_name(spec.id)}
    spec_json = spec.to_json()
    spec_hash = fingerprint(spec_json)
    launch = launch_of(settings, spec)
    labels = naming.standard_labels(spec.id, spec.session)
    workload_labels = labels
    pod_config_hash = None
    if spec.pool is not None:
        # A warm agent's pod, its claim template and its PVC are its member's, as they were
        # made: changing the pod template would restart the pod the claim bound, and a
        # StatefulSet's claim templates cannot change at all.
        member = member_of(spec)
        workload_labels = naming.standard_labels(spec.id, member.session)
        if member == spec:  # the member itself, labelled as one of its pool
            labels = {**labels, **member_labels(spec.pool, member_label_shape(settings, spec))}
        else:
            configmap = render_agent(settings, member)[0]
            pod_config_hash = _hash(configmap.get("data", {}))
    context: dict[str, Any] = {
        "agent": spec,
        "names": names,
        "labels": labels,
        "workload_labels": workload_labels,
        "binding": binding_volume(spec),
        "selector_labels": naming.selector_labels(spec.id),
        "k8s": settings.k8s_mode,
        "resources": spec.resources,
        "port": AGENT_PORT,
        "replicas": replicas,
        "launch": launch,
        "home": home_dir(launch.work_dir) if uses_claude(spec.command) else launch.work_dir,
        "secret_env": secret_env(settings, spec),
        "waiting": waiting_volume(settings, spec),
        "credential_env": credential_variables,
        "spec_hash": spec_hash,
        "spec_json": spec_json,
        "suspension": suspension,
    }
    objects = []
    for template, kind, name_key in compiled:
        obj = _render_one(template, context)
        _check_object(obj, template.name, kind, names[name_key], settings.k8s_mode.namespace)
        if kind == "ConfigMap":
            context["config_hash"] = pod_config_hash or _hash(obj.get("data", {}))
        if kind == "StatefulSet":
            _check_workload(obj, template.name, replicas, suspension)
        objects.append(obj)
    return objects


class RenderCache:
    """An agent's rendered manifests by spec and suspension, for one settings object: the last
    ``max_entries`` renders are kept (about 20 KiB each), so that what renders an agent again
    (a repeated create, each drift-repair pass, a suspend or resume) does not. A create renders
    a spec not seen before: no cache spares that render.

    The manifests are shared between callers: they may be read, never changed (copy first)."""

    def __init__(self, settings: Settings, max_entries: int = 256) -> None:
        self.settings = settings
        self._cached = lru_cache(maxsize=max_entries)(self._render)

    def _render(self, spec: AgentSpec, replicas: int, suspension: str | None) -> tuple[dict[str, Any], ...]:
        return tuple(render_agent(self.settings, spec, replicas=replicas, suspension=suspension))

    def agent(self, spec: AgentSpec, *, replicas: int = 1, suspension: str | None = None) -> list[dict[str, Any]]:
        """:func:`render_agent` of ``spec`` with the StatefulSet's ``replicas`` and ``suspension``,
        rendered once while it is among the last ``max_entries``. Raises :class:`RenderError`."""
        return list(self._cached(spec, replicas, suspension))

    def clear(self) -> None:
        """Forget every render (the templates changed)."""
        self._cached.cache_clear()


def launch_of(settings: Settings, spec: AgentSpec) -> AgentLaunch:
    """How the agent's container starts: agentapi around its command, behind the launcher
    (:mod:`agentproxy.launcher`), which asks agentapi to save the conversation within
    ``local_mode.state_save_interval`` of every change (a pod killed without SIGTERM loses no
    more) and, when the command runs Claude Code, prepares its home on its volume first. A
    warm agent's launcher waits for its binding first (see :func:`binding_volume`); once
    claimed, its variables say it is bound, for a container that starts again."""
    launch = agent_launch(spec, port=AGENT_PORT, work_dir=settings.k8s_mode.work_dir)
    interval = settings.local_mode.state_save_interval
    binding = None
    if spec.pool is not None:
        binding = (BINDING_HOST, BINDING_PORT, posixpath.join(BINDING_DIR, BINDING_KEY))
    if not uses_claude(spec.command):
        launch = wrapped(launch, save_interval=interval, binding=binding, prestart=_prestarted(settings, spec.pool))
    else:
        claude = settings.agents.claude
        extra = {**QUIET_ENV, **({BASE_URL_VARIABLE: claude.base_url} if claude.base_url else {})}
        launch = wrapped(launch, save_interval=interval, claude_home=True, permission_mode=claude.permission_mode,
                         extra_env=extra, waiting=waiting_report(settings), binding=binding,
                         prestart=_prestarted(settings, spec.pool))
    if spec.pool is not None and spec.session != POOL_SESSION:
        launch = dataclasses.replace(launch, env={**launch.env, BOUND_VARIABLE: "1"})
    return launch


def _prestarted(settings: Settings, pool: str | None) -> bool:
    """Whether the members of ``pool`` run their program before their claim (its ``prestart``)."""
    if pool is None or not settings.pools:
        return False
    for item in settings.pools:
        if item.get("name") == pool:
            return bool(item.get("prestart", False))
    return False


BINDING_HOST = "0.0.0.0"
"""Where a member's launcher listens for its binding: every address of its pod (the proxy
posts to the pod's IP; the startup probe asks on loopback)."""
BINDING_PORT = AGENT_PORT + 1
"""The port of a member's binding listener (agentapi's is :data:`AGENT_PORT`)."""
BINDING_DIR = "/var/run/agentproxy-binding"
"""Where a member's pod mounts its binding Secret (the token, and nothing else)."""
BINDING_KEY = "token"
"""The key of the token in a member's binding Secret, and its file name."""


def binding_secret_name(agent_id: str) -> str:
    """The Secret of a pool member's binding token (``agent-ID-binding``), mounted by its pod alone."""
    return f"{naming.statefulset_name(agent_id)}-binding"


def binding_volume(spec: AgentSpec) -> dict[str, Any] | None:
    """The Secret volume of a warm agent's pod (``secret``, ``dir``, ``key``): the token its
    launcher reads before it waits for its binding; None for a cold agent. Only the name is
    rendered: the proxy writes the token into the Secret itself."""
    if spec.pool is None:
        return None
    return {"secret": binding_secret_name(spec.id), "dir": BINDING_DIR, "key": BINDING_KEY}


def member_of(spec: AgentSpec) -> AgentSpec:
    """The pool member a warm agent was made from: the same id and shape, in the pool's session,
    owned by nobody, with no variables, message, tags or group (what a member is made with)."""
    return dataclasses.replace(spec, session=POOL_SESSION, env={}, message=None, owner=None, tags={}, group=None)


def member_label_shape(settings: Settings, spec: AgentSpec) -> str:
    """The shape a member is labelled with: its :func:`member_shape`, told apart when its pool
    pre-starts its members (see :func:`agentproxy.pools.prestarted_shape`)."""
    shape = member_shape(spec)
    return prestarted_shape(shape) if _prestarted(settings, spec.pool) else shape


def member_shape(spec: AgentSpec) -> str:
    """The shape of an agent (see :func:`agentproxy.pools.shape_of`)."""
    return shape_of(spec.type, spec.command, dataclasses.asdict(spec.resources), spec.profile)


WAITING_TOKEN_DIR = "/var/run/agentproxy"
"""Where a Claude agent's pod gets its ServiceAccount token for the proxy (a projected volume)."""
WAITING_TOKEN_FILE = "waiting-token"
WAITING_TOKEN_SECONDS = 3600
"""The token's life; the kubelet renews it at 80 % of it."""


def waiting_report(settings: Settings) -> tuple[str, str] | None:
    """Where a Claude agent's hooks report ``waiting_input`` (``k8s_mode.waiting_url``'s route)
    and the file of the token they sign it with; None when k8s mode does not detect it."""
    url = settings.k8s_mode.waiting_url
    if not url:
        return None
    return url.rstrip("/") + REPORT_PATH, posixpath.join(WAITING_TOKEN_DIR, WAITING_TOKEN_FILE)


def waiting_volume(settings: Settings, spec: AgentSpec) -> dict[str, Any] | None:
    """The projected ServiceAccount token of a Claude agent's pod whose hooks report to the
    proxy (``audience``, ``seconds``, ``dir``, ``file``), None otherwise. The kubelet writes it,
    bound to the pod: nothing secret is rendered, and a token names the one pod it was made for."""
    if not uses_claude(spec.command) or not settings.k8s_mode.waiting_url:
        return None
    return {"audience": settings.k8s_mode.waiting_audience, "seconds": WAITING_TOKEN_SECONDS,
            "dir": WAITING_TOKEN_DIR, "file": WAITING_TOKEN_FILE}


def missing_key(settings: Settings, spec: AgentSpec) -> str | None:
    """Why a Kubernetes agent of ``spec`` could not start unattended, or None: Claude Code
    without a key (``k8s_mode.secret_name`` unset) stops at its login screen, and its first
    message would never be answered."""
    if uses_claude(spec.command) and settings.k8s_mode.secret_name is None:
        return (f"agent type {spec.type!r} runs Claude Code, which needs the model's key: set "
                f"k8s_mode.secret_name to a Secret holding it under the key {settings.agents.claude.api_key_env!r} "
                f"(agents.claude.api_key_env)")
    return None


def secret_env(settings: Settings, spec: AgentSpec) -> list[dict[str, str]]:
    """Variables of the container taken from a key of the Secret ``k8s_mode.secret_name``
    (``name``, ``secret``, ``key``): only names are rendered, never a value. A Claude agent
    gets ``ANTHROPIC_API_KEY`` from the Secret's key ``agents.claude.api_key_env``."""
    secret = settings.k8s_mode.secret_name
    if secret is None or not uses_claude(spec.command):
        return []
    return [{"name": KEY_VARIABLE, "secret": secret, "key": settings.agents.claude.api_key_env}]


def render_rbac(settings: Settings, name: str = "agentproxy") -> list[dict[str, Any]]:
    """The ServiceAccount, Role and RoleBinding the proxy runs with in k8s mode."""
    env = _environment(settings.templates_dir)
    try:
        template = env.get_template("rbac.yaml.j2")
    except jinja2.TemplateNotFound:
        raise RenderError("template rbac.yaml.j2 not found") from None
    text = _render_text(template, {"name": name, "k8s": settings.k8s_mode})
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


def _render_text(template: jinja2.Template, context: dict[str, Any]) -> str:
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {template.name}{_template_line(template)}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {template.name}{_template_line(template)}: {exc}") from None


def _render_one(template: jinja2.Template, context: dict[str, Any]) -> dict[str, Any]:
    text = _render_text(template, context)
    obj = yamlfast.load(text)  # the same objects as PyYAML's, when the text is in its subset
    if obj is not None:
        return obj
    try:
        obj = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RenderError(f"template {template.name} rendered invalid YAML{where}: "
                          f"{getattr(exc, 'problem', exc)}") from None
    return obj


def _template_line(template: jinja2.Template) -> str:
    # Jinja rewrites tracebacks so that frames in template code carry the
    # template's own file name and line numbers.
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" line {line}" if line else ""


def _check_object(obj: Any, filename: str | None, kind: str, name: str, namespace: str) -> None:
    """The backend finds objects by their fixed names and labels: a template may
    change anything else, but not those."""
    if not isinstance(obj, dict):
        raise RenderError(f"template {filename} must render one YAML mapping")
    meta = obj.get("metadata") or {}
    if obj.get("kind") != kind or meta.get("name") != name or meta.get("namespace") != namespace:
        raise RenderError(f"template {filename} must render {kind} {namespace}/{name}, "
                          f"got {obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}")
    labels = meta.get("labels") or {}
    if labels.get(naming.LABEL_MANAGED_BY) != naming.MANAGED_BY:
        raise RenderError(f"template {filename} must keep the label {naming.MANAGED_SELECTOR}")


def _check_workload(obj: dict[str, Any], filename: str | None, replicas: int, suspension: str | None) -> None:
    """Suspending an agent scales its StatefulSet to 0 with an annotation: a template must render
    both from the context, or a suspend would be undone by the next apply."""
    rendered = (obj.get("spec") or {}).get("replicas")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if rendered != replicas or annotations.get(naming.ANNOTATION_SUSPENDED) != suspension:
        raise RenderError(f"template {filename} must render spec.replicas from `replicas` and, when "
                          f"`suspension` is set, the annotation {naming.ANNOTATION_SUSPENDED} from it")


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML, as ``kubectl`` prints it, that Kubernetes reads as written (see
    :mod:`.yamlout`)."""
    return yamlout.dump_all(objects)


def dump_json(objects: list[dict[str, Any]]) -> str:
    """A ``v1/List`` of the objects, as ``kubectl get -o json`` prints several."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"

