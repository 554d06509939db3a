"""The local backend: each agent is an ``agentapi`` process supervised by the proxy.

Modules, from the bottom up: :mod:`.ports` hands out TCP ports, :mod:`.process`
spawns, identifies, samples and stops process trees (a module per concern),
:mod:`.logs` keeps each agent's capped log, :mod:`.state` persists what a
restarted proxy needs to re-adopt its agents (the state file), :mod:`.restarts` is the pure
restart policy, :mod:`.pool` keeps the warm pools' members (waiting launchers),
:mod:`.following` follows a ready agent's conversation,
:mod:`.report` says how an agent is shown and recorded, :mod:`.supervisor` runs
one agent's life (readiness, restarts, memory limit) and :mod:`.backend` puts
them behind the :class:`~agentproxy.backends.base.Backend` interface.
"""
