"""Backends: where agents run (local processes or Kubernetes objects).

The interface and the rules every mode shares:

- :mod:`.base`: the one interface both backends implement, and what they share: idempotency by
  spec fingerprint, session scoping, list order, per-agent locks, suspend and resume as no-ops
  when done.
- :mod:`.agent_state`: an agent's state and status, and which changes make an event;
  :mod:`.events`: their fan-out to subscribers; :mod:`.eventlog`: their ids and the window
  a reconnecting client is given.
- :mod:`.progress`: the ordered steps of an agent's start, and of a claim from a warm pool (pure).
- :mod:`.errors`: the errors and the HTTP status each answers with.
- :mod:`.index`: agents by session and owner, and their states, so that a list costs what it
  returns.
- :mod:`.suspension`: what a suspension is; :mod:`.lifecycle`: resume-to-ready timing and who
  is told of suspends and resumes.
- :mod:`.conversation`: following agents' conversations (saves, first message, activity).
- :mod:`.limits`: agents per session and owner, creates at once; :mod:`.ownership`: whose a
  session is.
- :mod:`.pooling`: the configured warm pools, the shape of a create, the keeper a mode claims
  members through (see :mod:`agentproxy.pools`).
- :mod:`.modeswitch`: agents of the other mode, found when ``serve`` starts;
  :mod:`.factory`: the backend the settings ask for.

The two implementations of its primitives: :mod:`.local` (a supervisor per agent) and
:mod:`.k8s` (objects applied server-side and watched); each names its modules.
"""
