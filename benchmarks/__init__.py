"""Measurements of agentproxy (``bin/just bench``); the unit tests run each once, tiny, to see that
it works. Run them from the repository's root as modules, e.g. ``python -m benchmarks.proxy``.

Modules:

- :mod:`.render`: manifest rendering for many agents, with and without YAML output.
- :mod:`.k8s`: the k8s backend against ``$KUBECONFIG`` (creates against ``kubectl apply
  --server-side``, API requests per create, lists); :mod:`.cluster_check`: what the benchmarks
  that need a cluster check first; :mod:`.faults`: noticing and recovering from API server
  faults; :mod:`.real_node`: agents on the test cluster's real node.
- :mod:`.scale`: many agents through two replicas on the cluster (lists, memory, idle CPU, a
  restarted replica, status changes, drift, creates against the API server's floor), its lists
  against :mod:`.bare_body`'s, the same bytes from the barest aiohttp handler;
  :mod:`.list_cache`: the k8s read path with many agents in :mod:`.synthetic`'s imitation of the
  API server's lists, no cluster needed; :mod:`.list_local`: lists of many local echo agents;
  :mod:`.transport`: the CPU a call and a watch event cost, kr8s's ``call_api`` against the k8s
  client's transport over aiohttp.
- :mod:`.local`: the local supervisor's overhead, memory per agent, concurrent starts;
  :mod:`.restart`: a ``kill -9`` of the proxy and how soon it serves its agents again;
  :mod:`.suspend`: suspend and resume; :mod:`.first_answer`: create-to-first-answer of Claude
  Code against echo, and of claims from warm pools; :mod:`.save_lag`: what a SIGKILL inside an
  agent's container loses; :mod:`.waiting`: from Claude Code's hook to ``waiting_input`` on ``/events``;
  :mod:`.pool`: warm pool claims against cold creates (claim-to-ready, claim-to-first-answer, refill);
  :mod:`.pool_k8s`: the same in k8s mode on ``$KUBECONFIG``'s kwok node (claim-to-ready, API
  requests per create, refill).
- :mod:`.events`: the cost of ``GET /events`` with many agents and subscribers;
  :mod:`.agent_streams`: many agents, each with its own ``/events`` stream through the proxy and
  a message every few seconds (events lost, added delay, memory per stream).
- :mod:`.triggers`: inbound webhooks against a real proxy (local mode, or k8s mode on the kwok
  node): webhook-to-agent-ready against a plain create, the notification latency of each kind,
  and a bounded load of signed deliveries (none lost, none doubled, 429s counted).
- :mod:`.proxy`: the proxy against direct agentapi and two other proxies, over the paths of
  :mod:`.paths`, with the stream readers of :mod:`.streams` (run by path, as processes of their
  own), the kernel timestamps of :mod:`.capture` and the byte-relay floor of :mod:`.relay`;
  :mod:`.token_auth`: the same proxied path with an API key against a sign-in (OpenID Connect)
  bearer token, and the token check alone.
- :mod:`.signin`: sign-in to the first agent's answer in Chromium through the OpenID provider's
  login page (time, and a person's clicks and keys).
"""
