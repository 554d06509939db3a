"""What checking a sign-in token costs a proxied request: the proxy benchmark's path through
agentproxy with an API key against the same path with an OpenID Connect bearer token.

A real OpenID provider (``tests/oidc_provider.py``: zitadel/oidc's example provider on loopback)
issues an ID token to the CLI's client after a real code flow with PKCE. One agentapi v0.12.1
(the echo demo agent) and one agentproxy in front of it are started as ``benchmarks/proxy.py``
starts them (``benchmarks/paths.py``), agentproxy with an API key and with sign-in on (both name
the same admin: the key's ``admin`` flag, the token's group as ``teams.admin_group``). Each run
starts them afresh, reads the provider's keys once (the first request with the token), and
measures three ways to agentapi's ``GET /status``, in an order rotated from run to run:
direct, through agentproxy with the key, through agentproxy with the token, with
``benchmarks/proxy.py``'s wrk figures: p50 latency at 1 connection, requests/s at 32
connections, and agentproxy's CPU time per request.

Beside them, in this process, the token check alone (:class:`agentproxy.teams.tokens.TokenVerifier`
against the same provider): a check of a token checked before (what every request after the
first pays), against one that decodes and verifies the signature each time (what a request would
pay without the verifier's memory of checked tokens).

Every figure is the median of ``--runs`` runs (3); the ratios and differences are taken within a
run. A request that fails (any answer but 2xx) is counted and reported, and fails the benchmark.

Usage: ``python -m benchmarks.token_auth [--runs 3] [--duration 5] [--checks 2000] [--ports FIRST-LAST]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from agentproxy.api.auth import Authenticator
from agentproxy.api.serve import api_keys_from
from agentproxy.settings import load_settings
from agentproxy.teams.config import teams_of
from agentproxy.teams.oidc import oidc_config
from agentproxy.teams.tokens import TokenVerifier
from tests.oidc_provider import CLI_CLIENT_ID, CLIENT_ID, running_provider, sign_in

from .paths import Ports, start_all
from .proxy import WRK_SCRIPT, _fmt, _median, add_load_arguments, port_range, wrk

USER, GROUP = "alice", "ml"
"""The provider's user the token names, and one of her groups (made the admin group)."""
WAYS = ("direct", "key", "token")
NAMES = {"direct": "direct agentapi", "key": "agentproxy, API key", "token": "agentproxy, OIDC token"}


def proxy_settings(issuer: str, key: str) -> tuple[str, ...]:
    """agentproxy's settings: sign-in with the provider, and ``key`` for the same user, both admin."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return (f"server.oidc.issuer={issuer}", f"server.oidc.client_id={CLIENT_ID}",
            f"server.oidc.cli_client_id={CLI_CLIENT_ID}", f"teams.admin_group={GROUP}",
            f"server.api_keys=[{{name: bench, sha256: {digest}, user: {USER}, admin: true}}]")


# --- the token check alone ---------------------------------------------------------------------------

ROUNDS = 50
"""The calls of an in-process figure are timed in this many rounds, and the fastest round counts
(as ``timeit`` advises): the slower ones measure what else the machine ran meanwhile."""


def _per_call_us(call: Callable[[], Any], count: int) -> float:
    """µs per call of ``call``: the fastest of :data:`ROUNDS` rounds of ``count / ROUNDS`` calls."""
    per_round = max(1, count // ROUNDS)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(per_round):
            call()
        best = min(best, time.perf_counter() - started)
    return best / per_round * 1e6


async def _per_check_us(check: Callable[[], Awaitable[Any]], count: int) -> float:
    """µs per check, as :func:`_per_call_us` times them."""
    per_round = max(1, count // ROUNDS)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(per_round):
            await check()
        best = min(best, time.perf_counter() - started)
    return best / per_round * 1e6


async def check_costs(settings: tuple[str, ...], credentials: dict[str, str], checks: int) -> dict[str, Any]:
    """In this process, µs per call: the relay's whole look-up of the caller (``holder``) with the
    key and with the token, and the token's check remembered (checked before) and afresh (decode,
    signature, claims)."""
    loaded = load_settings(overrides=settings, environ={}).settings
    config = oidc_config(loaded)
    assert config is not None  # sign-in is on in these settings
    verifier = TokenVerifier(config)
    auth = Authenticator(api_keys_from(loaded), teams_of(loaded), verifier)
    token = credentials["token"].removeprefix("Bearer ")
    try:
        await verifier.verify(token)  # reads the provider's configuration and keys once
        costs = {way: _per_call_us(functools.partial(auth.holder, credentials[way], None), checks)
                 for way in ("key", "token")}
        costs["remembered"] = await _per_check_us(lambda: verifier.verify(token), checks)
        # An explicit audience bypasses the memory of checked tokens: a full check each time.
        costs["verified"] = await _per_check_us(lambda: verifier.verify(token, audiences=config.audiences), checks)
    finally:
        await verifier.close()
    header = json.loads(_b64decode(token.split(".")[0]))
    return {f"{name}_us": value for name, value in costs.items()} | {
        "algorithm": header.get("alg"), "key_readings": verifier.key_readings}


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- one run ---------------------------------------------------------------------------------------

def one_run(index: int, args: argparse.Namespace, script: Path, settings: tuple[str, ...],
            credentials: dict[str, str]) -> dict[str, Any]:
    """Start agentapi and agentproxy afresh and measure the three ways, in an order rotated by ``index``."""
    first, last = args.ports
    key_header = credentials["key"]
    with start_all(Ports(first, last), ("direct", "agentproxy"), args.loop, agentproxy_settings=settings,
                   agentproxy_headers={"Authorization": key_header}) as running:
        proxied = running.paths["agentproxy"]
        if proxied.missing:
            raise RuntimeError(f"agentproxy did not start: {proxied.missing}")
        bases = {"direct": running.paths["direct"].base, "key": proxied.base, "token": proxied.base}
        pids = {"direct": running.paths["direct"].pid, "key": proxied.pid, "token": proxied.pid}
        order = list(WAYS[index % len(WAYS):] + WAYS[:index % len(WAYS)])
        print(f"run {index + 1}: {' '.join(order)}", file=sys.stderr, flush=True)
        result: dict[str, Any] = {"latency": {}, "throughput": {}}
        for way in order:  # warm-up; the token's first request reads the provider's keys
            wrk(f"{bases[way]}/status", 32, 1, args.max_requests, script, credentials.get(way))
        for name, connections in (("latency", 1), ("throughput", 32)):
            for way in order:
                before = psutil.Process(pids[way]).cpu_times()
                result[name][way] = figures = wrk(f"{bases[way]}/status", connections, args.duration,
                                                  args.max_requests, script, credentials.get(way))
                after = psutil.Process(pids[way]).cpu_times()
                used = (after.user - before.user) + (after.system - before.system)
                figures["cpu_us"] = used / max(1, figures["requests"]) * 1e6
        return result


# --- the table ---------------------------------------------------------------------------------------

def _within(runs: list[dict[str, Any]], name: str, figure: str, way: str, against: str,
            ratio: bool) -> float | None:
    """The median over the runs of ``way``'s figure divided by (or less) ``against``'s in the same run."""
    values = [r[name][way][figure] / r[name][against][figure] if ratio
              else r[name][way][figure] - r[name][against][figure] for r in runs]
    return _median(values)


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per way: medians over the runs (ratios and differences within a run, against direct and the key)."""
    return {way: {
        "p50": _median([r["latency"][way]["p50"] for r in runs]),
        "added": _within(runs, "latency", "p50", way, "direct", ratio=False),
        "rps": _median([r["throughput"][way]["rps"] for r in runs]),
        "ratio": _within(runs, "throughput", "rps", way, "direct", ratio=True),
        "cpu": _median([r["throughput"][way]["cpu_us"] for r in runs]),
        "p50_vs_key": _within(runs, "latency", "p50", way, "key", ratio=False),
        "rps_vs_key": _within(runs, "throughput", "rps", way, "key", ratio=True),
        "cpu_vs_key": _within(runs, "throughput", "cpu_us", way, "key", ratio=False),
        "errors": sum(r[n][way]["errors"] for r in runs for n in ("latency", "throughput")),
    } for way in WAYS}


def report(rows: dict[str, dict[str, Any]], costs: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """Print the table; the failures (requests that did not succeed)."""
    print(f"token check per proxied request: agentproxy with an API key against an OIDC bearer token "
          f"(zitadel/oidc example provider, {costs['algorithm']}), one agentapi v0.12.1 (echo agent), "
          f"{os.cpu_count()} CPUs shared by all; median of {args.runs} run(s), order rotated")
    print(f"GET /status: wrk 4.1 -t1, {args.duration:g} s (at most {args.max_requests} requests) per figure; "
          f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print()
    print(f"{'way':<26}{'p50 @1':>8}{'added':>9}{'req/s @32':>11}{'÷direct':>9}{'CPU @32':>9}"
          f"{'p50 -key':>10}{'req/s ÷key':>12}{'CPU -key':>10}")
    print(f"{'':<26}{'ms':>8}{'ms':>9}{'':>11}{'':>9}{'µs/req':>9}{'ms':>10}{'':>12}{'µs/req':>10}")
    failures = []
    for way in WAYS:
        r = rows[way]
        direct, key = way == "direct", way == "key"
        print(f"{NAMES[way]:<26}{_fmt(r['p50'], '.3f'):>8}{'-' if direct else _fmt(r['added'], '.3f', True):>9}"
              f"{_fmt(r['rps'], ',.0f'):>11}{_fmt(r['ratio'], '.2f'):>9}{_fmt(r['cpu'], '.0f'):>9}"
              f"{'-' if direct or key else _fmt(r['p50_vs_key'], '.3f', True):>10}"
              f"{'-' if direct or key else _fmt(r['rps_vs_key'], '.2f'):>12}"
              f"{'-' if direct or key else _fmt(r['cpu_vs_key'], '.0f', True):>10}")
        if r["errors"]:
            failures.append(f"{NAMES[way]}: {r['errors']} failed requests (not 2xx)")
    print()
    print(f"the caller's look-up on the relay's fast path ({args.checks} calls each, in one process, fastest of "
          f"{ROUNDS} rounds): "
          f"{costs['key_us']:.1f} µs with the key, {costs['token_us']:.1f} µs with the token (checked before)")
    print(f"the token check alone: {costs['remembered_us']:.1f} µs a token checked before (what every request "
          f"after a token's first pays), {costs['verified_us']:.1f} µs a full check (decode, {costs['algorithm']} "
          f"signature, claims)")
    print("  direct's CPU column is agentapi's own; the key and token rows share one agentproxy process, "
          "measured apart")
    for failure in failures:
        print(f"  failed: {failure}")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser, ports=20)
    parser.add_argument("--checks", type=int, default=2000, help="token checks timed each way (default 2000)")
    args = parser.parse_args()
    args.ports = port_range(args.ports, 20)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing (bin/just wrk installs it)")
    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-token-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(WRK_SCRIPT)
        with running_provider(Path(tmp)) as provider:
            token = str(asyncio.run(sign_in(provider, USER))["id_token"])
            key = secrets.token_urlsafe(32)
            settings = proxy_settings(provider.issuer, key)
            credentials = {"key": f"Bearer {key}", "token": f"Bearer {token}"}
            runs = [one_run(i, args, script, settings, credentials) for i in range(args.runs)]
            costs = asyncio.run(check_costs(settings, credentials, args.checks))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "checks": costs}, indent=1))
    if report(summarise(runs), costs, args):
        sys.exit(1)


if __name__ == "__main__":
    main()
