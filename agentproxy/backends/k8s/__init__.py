"""Kubernetes mode: agents as StatefulSets, applied and watched with the credentials kr8s loads.

Pure decisions, no cluster:

- :mod:`.kinds`: the one table of the kinds agentproxy manages.
- :mod:`.model`: owner, delete targets, state from cached objects, the replicas of a suspended
  agent.
- :mod:`.plan`: the one plan of every apply (which objects, in which order, forced or not, owned
  or not, when the StatefulSet controller makes the PVC) and the one loop that carries it out.
- :mod:`.status`: an agent's status from its StatefulSet, Pod and PVC.
- :mod:`.drift`: which owned fields drifted.
- :mod:`.sharing`: the parts a cached object shares with a like one (stored once, read-only).
- :mod:`.steps`: the start steps of an agent, from the objects the watches hold.
- :mod:`.questions`: ``waiting_input`` reported by a pod's hooks: which pod a token names, and
  the question kept on the StatefulSet (with :class:`~.questions.TokenReviews`, the review calls).
- :mod:`.poolmembers`: warm pool members from their objects: which pool, which state (a half-made
  one is failed), the claim, one conditional merge patch of a member's ConfigMap with a mark of
  its own, and whether a claim whose write got no answer was applied.

The I/O behind them:

- :mod:`.client`: every API call goes through it (server-side apply, errors as backend errors);
  :mod:`.transport`: the calls and watches, sent over aiohttp with the credentials kr8s loaded;
  :mod:`.credentials`: where the credentials come from.
- :mod:`.cache`: the shared list+watch cache of the agents' objects and their Events.
- :mod:`.health`: whether the API server answers.
- :mod:`.rollback`: creates cut off half-way, rolled back at once or once the server answers.
- :mod:`.reconcile`: keeping each agent's objects as applied (drift repairs).
- :mod:`.ledger`: the quota ledger, the creates of every replica reserved by conditional writes
  (a warm create's moved to its member's id at the claim).
- :mod:`.leases`: the schedules' claims, one Lease per schedule written by conditional writes, so
  each tick is fired by one replica.
- :mod:`.hookstore`: hooks defined through the API, in a ConfigMap (definitions) and a Secret
  (secret values); :mod:`.deliveries`: hook delivery ids shared by replicas, one Lease each,
  created conditionally and swept by label.
- :mod:`.secrets`: the teams' credentials in Secrets (one per user or group, one per agent).
- :mod:`.upkeep`: the backend's counters and checks beside its agents.
- :mod:`.pool`: the warm pools: members made, claimed, bound and removed, refilled in the background
  by the holder of :mod:`.poollease`, the lease of one replica (its decision pure, :func:`.poollease.step`);
  claims whose write got no answer settled.
- :mod:`.backend`: all of it behind the :class:`~agentproxy.backends.base.Backend` interface.
"""
