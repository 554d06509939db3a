"""Kubernetes mode: agents as StatefulSets, applied and watched through kr8s."""
