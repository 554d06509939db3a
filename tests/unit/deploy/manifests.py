"""Rendering ``deploy/`` as users do: ``kubectl kustomize`` (kustomize as built
into kubectl) and ``helm template``, with the binaries the test environment
builds into the cache (``bin/just deploy-tools``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "agentapi-proxy"
sys.path.insert(0, str(ROOT / "testenv"))
# The imports below (E402) need the path entry above.
from layout import Layout  # noqa: E402

_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def tool(component: str, name: str) -> Path:
    """A binary from the cache; fails (never skips) when it is not built."""
    path = Layout.from_env().binary(component, name)
    if not path.exists():
        pytest.fail(f"{path} is not built; run `bin/just deploy-tools`")
    return path


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
    return result.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize PATH``, as ``kubectl apply -k PATH`` would apply it."""
    return objects(_run([str(tool("kubernetes", "kubectl")), "kustomize", str(path)]))


def helm_template(*args: str, release: str = "agentapi-proxy", namespace: str = "agentapi-proxy") -> list[dict[str, Any]]:
    """``helm template`` of the chart."""
    return objects(_run([str(tool("helm", "helm")), "template", release, str(CHART), "--namespace", namespace, *args]))


def by_key(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for obj in items:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in out, f"{key} twice"
        out[key] = obj
    return out


def comparable(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The objects with what legitimately differs between kustomize and Helm taken out:
    the hash suffix of the generated ConfigMap's name (kustomize) and the checksum
    annotation that rolls the Deployment on a change of settings (Helm), which do the
    same job; and the settings file compared as YAML rather than text."""
    out = {}
    for obj in items:
        obj = yaml.safe_load(yaml.safe_dump(obj))  # a deep copy
        meta = obj["metadata"]
        if obj["kind"] == "ConfigMap":
            meta["name"] = _HASH_SUFFIX.sub("", meta["name"])
            obj["data"] = {k: yaml.safe_load(v) for k, v in obj["data"].items()}
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            annotations = template["metadata"].pop("annotations", {})
            annotations.pop("checksum/config", None)
            if annotations:
                template["metadata"]["annotations"] = annotations
            for volume in template["spec"]["volumes"]:
                if "configMap" in volume:
                    volume["configMap"]["name"] = _HASH_SUFFIX.sub("", volume["configMap"]["name"])
        out[(obj["kind"], meta["name"])] = obj
    return out
