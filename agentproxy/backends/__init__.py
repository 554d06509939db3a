"""Backends: where agents run (local processes or Kubernetes objects)."""
