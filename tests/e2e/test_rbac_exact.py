"""The Role that ``agentproxy rbac`` renders (and ``deploy/`` applies) is exactly what
the proxy needs: with it, an agent's whole life works under the proxy's
ServiceAccount (two proxy replicas creating one agent included, its owner's credential
set and removed around it, and a schedule's tick claimed through its Lease); without any
one of its verbs, that life stops with a 403 that names the verb and the resource.

Every case runs in a namespace of its own, all at once, with a bound token of
the namespace's ServiceAccount, as the proxy has in a pod.

The life runs with an operator's PVC template (the default one and an annotation the
StatefulSet's claim template lacks), so that the proxy applies the PVC itself, as it does
for any PVC the StatefulSet controller would not make just so; with the default templates
the controller makes it, and the proxy never creates a PVC.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from datetime import UTC, datetime

from agentproxy.backends.base import AgentStatus, Forbidden, NotFound
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.render import default_templates_dir, render_rbac
from agentproxy.spec import build_spec
from agentproxy.teams.credentials import Holder
from agentproxy.triggers.claims import claim_tick, finish
from agentproxy.triggers.config import triggers_of

from .accounts import ACCOUNT, apply_rbac, bound_token, cluster_of, token_kubeconfig
from .agents import SESSION, settings_for
from .kube import create_namespace, delete_namespace

CASES = [(resource, verb) for rule in render_rbac(settings_for("x"), ACCOUNT)[1]["rules"]
         for resource in rule["resources"] for verb in rule["verbs"]]
"""Every (resource, verb) the Role grants."""


async def _life(backend: K8sBackend, peer: K8sBackend) -> str:
    """An agent's life under the proxy's credentials: start (list, watch); a schedule's tick
    claimed through its Lease by one of two replicas; a hook defined, and a delivery claimed
    through its Lease; an agent created by two
    proxy replicas at once with different specs (the claim: one wins, the other reads the
    claim and answers 409); server-side apply; ready; logs; delete with purge.
    Returns "ok", or the message of the first 403."""
    try:
        await backend.start()
        await peer.start()
        # A watch that is refused shows at once, as the error of its reflector.
        for _ in range(20):
            refused = [r.last_error for r in backend.cache.reflectors.values() if isinstance(r.last_error, Forbidden)]
            if refused:
                return refused[0].message
            await asyncio.sleep(0.1)
        # A schedule's tick, claimed through the schedule's Lease: the first look notes where the
        # schedule is (get, create), the next tick is claimed by the other replica (update) and
        # marked done.
        schedule = triggers_of(backend.settings).schedules["life"]
        first, tick = datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC), datetime(2026, 5, 1, 12, 15, tzinfo=UTC)
        if await backend.schedule_claims().update("life", lambda e: claim_tick(schedule, e, first, "r1")) is not None:
            return "a schedule's first look fired a tick"
        if await peer.schedule_claims().update("life", lambda e: claim_tick(schedule, e, tick, "r2")) != tick:
            return "the schedule's tick was not claimed"
        await peer.schedule_claims().update("life", lambda e: (finish(e, tick), None))
        # A hook defined through the API (its ConfigMap and Secret: get, create, patch), and a
        # delivery claimed through its Lease by one replica (create), refused to the other (get),
        # marked handled (update), and the old deliveries swept (deletecollection).
        await backend.hook_store().put("life", {"prompt": "p", "secret": "stored"}, "life-hook-value")
        if (await peer.hook_store().read())[1] != {"life": "life-hook-value"}:
            return "the hook defined through one replica is not read by the other"
        mine, theirs = backend.delivery_claims("r1"), peer.delivery_claims("r2")
        if not await mine.claim("life", "d1") or await theirs.claim("life", "d1"):
            return "a delivery was claimed by both replicas, or by neither"
        await mine.keep("life", "d1")
        await theirs.sweep()
        assert await backend.hook_store().delete("life")
        # The owner's credential, in the Secret of its holder (get, create, patch); the agent's
        # own Secret is applied from it at the create.
        holder = Holder("user", "life-owner")
        await backend.credential_store().put(holder, "github", "life-value")
        raced = await asyncio.gather(*(b.create(dataclasses.replace(
            build_spec(b.settings, SESSION, "life", message=m, owner="life-owner"), profile="gh"))
            for b, m in ((backend, "hi"), (peer, "hello"))), return_exceptions=True)
        for result in raced:
            if isinstance(result, Forbidden):
                return result.message
        if sorted(type(r).__name__ for r in raced) != ["AgentState", "Conflict"]:
            return f"two replicas creating one agent with different specs gave {raced}"
        for _ in range(300):
            with contextlib.suppress(NotFound):
                if (await backend.get(SESSION, "life")).status is AgentStatus.READY:
                    break
            await asyncio.sleep(0.1)
        else:
            return "the agent never became ready"
        try:
            await backend.logs(SESSION, "life", 10)
        except Forbidden:
            raise
        except Exception:  # kwok's pods have no logs to give; only the permission counts here
            pass
        await backend.delete(SESSION, "life", purge=True)  # its Secret too (delete)
        assert await backend.credential_store().delete(holder, "github")
        return "ok"
    except Forbidden as exc:
        return exc.message
    finally:
        await peer.close()
        await backend.close()


def _without(role: dict, resource: str, verb: str) -> dict:
    """``role`` granting everything it grants but ``verb`` on ``resource``."""
    rules = []
    for rule in role["rules"]:
        for name in rule["resources"]:
            verbs = [v for v in rule["verbs"] if (name, v) != (resource, verb)]
            if verbs:
                rules.append({**rule, "resources": [name], "verbs": verbs})
    return {**role, "rules": rules}


def _annotated_pvc_template(directory) -> str:
    """A templates directory whose PVC carries an annotation of its own."""
    directory.mkdir(exist_ok=True)
    default = (default_templates_dir() / "pvc.yaml.j2").read_text()
    assert "\n  labels:\n" in default
    (directory / "pvc.yaml.j2").write_text(default.replace(
        "\n  labels:\n", "\n  annotations:\n    backup.example.com/schedule: daily\n  labels:\n", 1))
    return str(directory)


async def _case(api, kubeconfig: str, tmp_path, missing: tuple[str, str] | None) -> str:
    namespace = f"rbac-{uuid.uuid4().hex[:8]}"
    await create_namespace(api, namespace, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    try:
        settings = settings_for(namespace, f"templates_dir={_annotated_pvc_template(tmp_path / 'templates')}",
                                "teams.profiles={gh: {credentials: {GH_TOKEN: github}}}",
                                "triggers.schedules={life: {cron: '*/15 * * * *', prompt: p}}")
        role = render_rbac(settings, ACCOUNT)[1]
        await apply_rbac(api, settings, _without(role, *missing) if missing else role)
        server, ca_file = cluster_of(kubeconfig)
        token = await bound_token(api, namespace, "proxy-pod")
        config = token_kubeconfig(tmp_path / f"{namespace}.kubeconfig", server, ca_file, token)
        client = await Client.connect(str(config))
        # A refused list only shows when the start gives up, so the start timeout is short,
        # but not so short that a loaded API server, answering the lists of the many replicas
        # this test starts together, cannot answer in time.
        options = {"backoff_max": 1.0, "start_timeout": 15.0}
        return await _life(K8sBackend(settings, client=client, **options),
                           K8sBackend(settings, client=Client(client.api), **options))
    finally:
        await delete_namespace(api, namespace)


async def test_the_role_is_exactly_what_an_agents_life_needs(api, kubeconfig, tmp_path):
    missing: list[tuple[str, str] | None] = [None, *CASES]
    results = await asyncio.gather(*(_case(api, kubeconfig, tmp_path, m) for m in missing))
    assert results[0] == "ok"  # nothing missing
    for (resource, verb), message in zip(CASES, results[1:], strict=True):
        assert f"the proxy's credentials may not {verb} {resource}" in message, (resource, verb, message)
        assert f":{ACCOUNT}\" cannot {verb} resource \"{resource.split('/')[0]}" in message, message
