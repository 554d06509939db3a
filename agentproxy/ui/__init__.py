"""The web dashboard: static files in ``static/`` (no build step, no third-party code),
served by :mod:`agentproxy.api.ui` under ``/ui/``. It speaks the public HTTP API only."""
