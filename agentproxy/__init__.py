"""agentproxy: run, supervise and proxy AI coding agents (agentapi servers)."""

__version__ = "0.1.0"
