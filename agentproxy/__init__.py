"""agentproxy: run, supervise and proxy AI coding agents (agentapi servers).

Packages (each names its modules in its own docstring):

- :mod:`.settings`: the settings schema, loading with sources, validation, display.
- :mod:`.backends`: the backend interface and the rules every mode shares, with the two
  implementations of its primitives, :mod:`.backends.local` and :mod:`.backends.k8s`.
- :mod:`.api`: the HTTP server: routes, reverse proxy, auth, metrics, OpenAPI, idle culling;
  :mod:`.api.compat`: the Go agentapi-proxy's session API over the same backend and proxy.
- :mod:`.cli`: the command line, every command's arguments.
- :mod:`.client`: the HTTP client commands (``agents ...``, ``chat``).
- :mod:`.ui`: the web dashboard's static files.
- :mod:`.teams`: a proxy shared by a team: users and groups, profiles, credentials, quotas,
  the audit log.
- :mod:`.triggers`: agents started by inbound webhooks and cron schedules, and notifications
  of agents' status sent out.

Modules at the top, pure unless said otherwise:

- :mod:`.naming`, :mod:`.spec`, :mod:`.quantity`: ids, names, labels; the validated agent
  spec; Kubernetes quantities.
- :mod:`.launch`: how an agent is started (agentapi's arguments, environment, work dir,
  state file, port and readiness check), for both modes.
- :mod:`.restore`: whether an agent's conversation is back (the readiness rule of both modes,
  and the check a pod runs).
- :mod:`.render` (with the default templates in the repository's ``templates/``): manifest
  rendering; :mod:`.yamlfast`: the fast path that reads the block YAML of rendered manifests;
  :mod:`.yamlout`: YAML output through PyYAML's C dumper, quoting what YAML 1.1 would misread.
- :mod:`.pools`: warm pools: their settings, member shapes and labels, which create a pool
  serves, refill plans (pure); :mod:`.launcher`: the one entry point of an agent's container
  (and of a local pool member): waits for its binding when warm, runs agentapi, asks it to save
  its conversation after every change, forwards signals (standard library only); :mod:`.keywait`:
  the ``apiKeyHelper`` of a pre-started Claude Code member, which prints its key once its
  binding wrote it; :mod:`.firstmessage`: a pre-started member's first message handed to its
  running agentapi.
- :mod:`.idle`: the pure rules of idle culling and the age limit.
- :mod:`.apikeys`: API keys and their rules (digests, names, roles), for the settings and the
  API alike.
- :mod:`.sse`: a Server-Sent Events parser for chunks of any size.
- :mod:`.heap`: the cyclic garbage collector paused while a start loads what the process keeps,
  and what it loaded frozen out of its sight.
- :mod:`.privatefile` (I/O): files readable by their owner alone, written whole or not at all.
- :mod:`.waiting`: whether a Claude Code agent waits for its user, as its own hooks tell it
  (run by those hooks in the agent's home; the proxy reads what it keeps).
- :mod:`.agentapi`, :mod:`.archive` (I/O): finding and building the agentapi binary
  (``install-agentapi``); unpacking source archives with tarfile's ``data`` filter, or the
  same checks where Python (3.11.0-3.11.3) has none.
- :mod:`.agentprograms`, :mod:`.agenthome` (I/O): agent programs installed from npm into the
  cache (``install-agents``); the prepared home of a Claude Code agent (the pure merge and its
  I/O).
- :mod:`.demo_agent`: the ``echo`` demo agent; :mod:`.__main__`: ``python -m agentproxy``.
"""

__version__ = "0.1.0"
