"""`render`'s YAML means to Kubernetes what it means to agentproxy: every string decodes back as
the same string through Kubernetes' own decoder, sigs.k8s.io/yaml (go-yaml's YAML 1.1 rules,
where ``y``, ``off``, ``1e3`` or ``0o17`` are no strings), over the hostile corpus of the
emitter's property tests.

The decoder is a tiny Go program (``testenv/k8s-yaml``) that ``bin/just unit`` builds into the
cache first (``testenv/build.sh k8s-yaml``); without it these tests fail, they never skip."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from agentproxy.agentapi import cache_root
from agentproxy.render import dump_yaml, render_agent
from agentproxy.settings import Settings
from agentproxy.spec import build_spec

from .support import DOCUMENTS, NASTY, PIECES, TEXT

SOURCES = Path(__file__).resolve().parents[3] / "testenv" / "k8s-yaml"

# Words that some YAML 1.1 or 1.2 resolver reads as another type than a string, in their spellings.
OTHER_TYPES = [
    "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
    "true", "True", "TRUE", "false", "False", "FALSE", "~", "null", "Null", "NULL",
    "0", "1", "-1", "+1", "017", "0o17", "0O17", "0x1f", "0X1F", "0b101", "-0b101", "1_000", "0x_1f",
    "1e3", "1E3", "-1e-3", "+1e+3", "1.5", "1.", ".5", "-.5", "1.5e3", "1_000.5", "190:20:30", "1:30", "-1:30.5",
    ".inf", ".Inf", "+.INF", "-.inf", ".nan", ".NaN", ".NAN",
    "2001-12-14", "2001-1-2", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "2001-12-15T02:59:43.1Z",
    "<<", "=", "", " ", "-", "?", ":", "!", "&a", "*a", "|", ">", "%", "@", "`", "#",
]


def decoder() -> Path:
    """The decoder built from the sources of this checkout (the cache entry ``testenv/build.sh`` makes)."""
    digest = hashlib.sha256(b"".join((SOURCES / name).read_bytes() for name in ("go.mod", "go.sum", "main.go")))
    path = cache_root() / "bin" / f"k8s-yaml-{digest.hexdigest()[:16]}" / "k8s-yaml"
    assert path.is_file(), f"{path} is missing: run `testenv/build.sh k8s-yaml` (`bin/just unit` does)"
    return path


def k8s_decode(text: str) -> list[Any]:
    """The documents of ``text`` as Kubernetes decodes them (as JSON values)."""
    done = subprocess.run([str(decoder())], input=text.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout)


def as_json(documents: list[Any]) -> list[Any]:
    return json.loads(json.dumps(documents))


def test_the_decoder_is_kubernetes_yaml_1_1():
    # The decoder itself: plain words that are no strings to it, quoted ones that are.
    assert k8s_decode("---\na: y\nb: 0o17\nc: 1e3\nd: off\n---\ne: 'y'\n") == [
        {"a": True, "b": 15, "c": 1000, "d": False}, {"e": "y"}]


@pytest.mark.parametrize("word", OTHER_TYPES)
def test_words_of_other_types_stay_strings_as_values_and_keys(word):
    documents = [{"data": {"v": word, word or "k": "v", "list": [word]}}]
    text = dump_yaml(documents)
    assert k8s_decode(text) == as_json(documents), text


def test_the_hostile_corpus_stays_strings():
    documents = [{"data": {f"k{n}": value, value or "empty": n, "items": [value]}} for n, value in enumerate(NASTY)]
    assert k8s_decode(dump_yaml(documents)) == as_json(documents)


@hypothesis_settings(max_examples=100, deadline=None)
@given(DOCUMENTS)
def test_every_document_of_the_emitters_corpus_reads_back_the_same(documents):
    assert k8s_decode(dump_yaml(documents)) == as_json(documents)


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(TEXT, st.sampled_from(OTHER_TYPES), st.lists(PIECES, min_size=1, max_size=3).map("".join)),
                min_size=1, max_size=6))
def test_rendered_manifests_read_back_the_same(values):
    settings = Settings()
    # The message and env values a create may carry (no NUL: build_spec refuses it).
    texts = [v.replace("\x00", "") for v in values]
    env = {f"V{n}": text for n, text in enumerate(texts)}
    spec = build_spec(settings, "s1", "a1", env=env, message=texts[0] or None)
    objects = render_agent(settings, spec)
    decoded = k8s_decode(dump_yaml(objects))
    assert decoded == as_json(objects)
    config = next(d for d in decoded if d["kind"] == "ConfigMap")["data"]
    assert all(config[name] == text for name, text in env.items())
