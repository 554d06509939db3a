"""Agents that start themselves and call back: inbound webhooks, cron schedules and
notifications of agents' status. The rules are pure; the HTTP layer and the stores do the I/O.

Modules:

- :mod:`.config`: the ``triggers`` settings parsed and checked when settings load; secrets by
  reference (a variable or a file), read when needed.
- :mod:`.templates`: prompts and match expressions in Jinja2's sandbox, bounded; templates that
  name Python internals refused at load.
- :mod:`.signatures`: HMAC-SHA256 signatures of deliveries in (GitHub's and a generic header) and
  of notifications out (with a timestamp).
- :mod:`.matching`: whether a hook acts on an event, what its template sees, the agent's id.
- :mod:`.dedupe`: delivery ids seen before, kept in files across restarts (and in k8s mode shared
  by replicas: :mod:`agentproxy.backends.k8s.deliveries`).
- :mod:`.defined`: hooks defined through the API, checked by the settings' rules, and their
  secret-free stored form (pure); :mod:`.hookstore`: where they are kept in local mode (files of
  the data directory; k8s mode: :mod:`agentproxy.backends.k8s.hookstore`); :mod:`.hookbook`: the
  hooks of the settings and of the store, read again on a miss and every few seconds.
- :mod:`.hooks`: ``POST /hooks/{id}``.
- :mod:`.schedules`: cron ticks in a time zone and the missed-tick policy (pure);
  :mod:`.claims`: which tick a replica claims, when a claim is stale, and the claims as JSON and
  as Leases (pure); :mod:`.scheduler`: each tick claimed by one replica in a store (a file under a
  lock in local mode, Leases in k8s mode: :mod:`agentproxy.backends.k8s.leases`), and fired.
- :mod:`.notify`: which changes are news, to whom, how often, as what (pure);
  :mod:`.notifier`: follows the events and sends with retries and dead letters.
- :mod:`.records`: the recent deliveries in and out.
- :mod:`.routes`: ``GET /hooks``, ``/schedules``, ``/triggers/deliveries``, ``/triggers/dead-letters``;
  ``PUT``, ``GET``, ``DELETE /hooks/{id}``.
- :mod:`.service`: all of it wired into the app.
"""
