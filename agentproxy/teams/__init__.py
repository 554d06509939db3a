"""A proxy shared by a team: who belongs to which group, agent profiles, credentials, quotas and
an audit log. The rules are pure; the HTTP layer and the stores do the I/O.

Modules:

- :mod:`.config`: the ``teams`` settings parsed and checked when settings load.
- :mod:`.profiles`: agent profiles, who may use which, and what a create gets from one;
  :mod:`.agentfiles`: a profile's instruction file and MCP servers in an agent's home.
- :mod:`.credentials`: write-only credentials per user and group (0600 files in local mode)
  and the environment a profile maps them to.
- :mod:`.quotas`: agents, running agents and creates under way per user and group.
- :mod:`.audit`: one JSON line per change and per refused request, without secrets.
- :mod:`.oidc`: sign-in with OpenID Connect, the pure part (settings, claims, PKCE);
  :mod:`.tokens`: checking the provider's tokens against its keys (discovery, JWKS cache and
  rotation); :mod:`.signin`: the dashboard's code flow and ``/auth/...``.
- :mod:`.http`: what the routes share (the caller, its errors); :mod:`.routes`:
  ``/profiles``, ``/credentials``, ``/usage``.
"""
