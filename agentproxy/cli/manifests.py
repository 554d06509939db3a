"""``agentproxy render`` and ``agentproxy rbac``: manifests, without contacting any cluster."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..naming import DNS_SUBDOMAIN_RULE, is_dns_subdomain
from ..render import dump_json, dump_yaml, render_agent, render_rbac
from ..teams.config import teams_of
from ..teams.profiles import ProfileRefused, choose_profile, profile_settings
from .parser import UsageError, agent_options, load, settings_options, spec_of


def register(sub: Any) -> None:
    """Add ``render`` and ``rbac`` to the top-level subparsers."""
    render = sub.add_parser("render", help="print the Kubernetes manifests of one agent",
                            description="Print the four manifests agentproxy would apply for an agent, "
                                        "without contacting any cluster.")
    agent_options(render, id_required=False,
                  id_help="agent id (a DNS-1123 label of at most 46 characters; default: a random one)")
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    render.add_argument("--profile", metavar="NAME",
                        help="render an agent of this profile of teams.profiles (default: teams.default_profile)")
    settings_options(render)
    render.set_defaults(handler=_cmd_render)

    rbac = sub.add_parser("rbac", help="print the ServiceAccount, Role and RoleBinding of the proxy (k8s mode)")
    rbac.add_argument("--name", default="agentproxy", help="name of the ServiceAccount, Role and RoleBinding")
    rbac.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    settings_options(rbac)
    rbac.set_defaults(handler=_cmd_rbac)


def _write(objects: list[dict[str, Any]], output: str) -> None:
    sys.stdout.write(dump_json(objects) if output == "json" else dump_yaml(objects))


def _cmd_render(args: argparse.Namespace) -> int:
    settings = load(args).settings
    teams = teams_of(settings)
    try:
        # The operator reviews every profile, whoever may use it.
        profile = choose_profile(teams, args.profile, frozenset(), admin=True)
    except ProfileRefused as exc:
        raise UsageError(f"agentproxy render: --{exc}") from None
    spec = spec_of(args, profile_settings(settings, profile), base_env=dict(profile.env) if profile else None)
    if profile is not None:
        spec = dataclasses.replace(spec, profile=profile.name)
    _write(render_agent(settings, spec), args.output)
    return 0


def _cmd_rbac(args: argparse.Namespace) -> int:
    if not is_dns_subdomain(args.name):
        raise UsageError(f"agentproxy rbac: --name {args.name!r}: {DNS_SUBDOMAIN_RULE}")
    _write(render_rbac(load(args).settings, args.name), args.output)
    return 0
