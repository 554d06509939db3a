"""The fast path for reading rendered manifests gives exactly what PyYAML gives, or steps aside
for it; what `render` writes reads back the same."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings as hypothesis_settings, strategies as st

from agentproxy import render, yamlfast
from agentproxy.render import dump_yaml, render_agent
from agentproxy.settings import Settings
from agentproxy.spec import build_spec

from .support import DOCUMENTS, TEXT


@hypothesis_settings(max_examples=120, deadline=None)
@given(DOCUMENTS)
def test_dump_reads_back_the_same(documents):
    assert list(yaml.load_all(dump_yaml(documents), Loader=yaml.CSafeLoader)) == documents


def _pyyaml_load(text: str):
    try:
        return True, yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return False, None


@hypothesis_settings(max_examples=120, deadline=None)
@given(DOCUMENTS, st.sampled_from(["", "  ", "quotes", "spaces"]))
def test_load_is_pyyaml_or_declines(documents, variation):
    text = dump_yaml(documents[:1])[4:]
    if variation == "quotes":
        text = text.replace("'", '"')
    elif variation == "spaces":
        text = text.replace(": ", ":   ")
    else:
        text = variation + text
    fast = yamlfast.load(text)
    if fast is not None:
        ok, expected = _pyyaml_load(text)
        assert ok and fast == expected
        assert [type(v) for v in _leaves(fast)] == [type(v) for v in _leaves(expected)]


def _leaves(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


@hypothesis_settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True), TEXT, max_size=3), TEXT)
def test_rendered_manifests_take_the_fast_path_and_match_pyyaml(env, message):
    settings = Settings()
    # Without NUL characters, which build_spec refuses (no process could be given them).
    spec = build_spec(settings, "s1", "a1", env={k: v.replace("\x00", "") for k, v in env.items() if k.isidentifier()},
                      message=message.replace("\x00", "") or None)
    texts = []
    original = render._render_text
    with pytest.MonkeyPatch.context() as patch:
        def kept(template: Any, context: Any) -> str:
            texts.append(original(template, context))
            return texts[-1]
        patch.setattr(render, "_render_text", kept)
        objects = render_agent(settings, spec)
    assert len(texts) == 4
    for text, obj in zip(texts, objects, strict=True):
        fast = yamlfast.load(text)
        assert fast is not None and fast == obj == yaml.load(text, Loader=yaml.CSafeLoader)


def test_what_is_outside_the_subset_goes_to_pyyaml():
    for text in ("a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: 1.5\n", "a: {b: 1}\n",
                 "a: 'q'\n", "a: b # comment\n", "? complex\n: key\n", "a:\n\tb: 1\n", "a: 2001-12-14\n",
                 "--- \na: 1\n", "<<: {a: 1}\n", "a: b\n c\n", "a: \"unterminated\n"):
        assert yamlfast.load(text) is None, text


def test_the_subset_reads_as_pyyaml_reads_it():
    text = ('# a comment\nkind: "Pod"\nmetadata:\n  "name": "x\\u00e9\\n"\n  labels:\n    a.b/c: d\n'
            'spec:\n  replicas: 1\n  on: yes\n  none: ~\n  list: ["a", b, 3]\n  empty: []\n  items:\n'
            '  - name: one\n    port: 0x10\n  -\n    nested: true\n  - "scalar"\n')
    assert yamlfast.load(text) == yaml.safe_load(text)
    assert yamlfast.load("- - nested\n") == [["nested"]]


@pytest.mark.parametrize("text", ['a: "\\ud800"\n', 'a: "x\\udc80"\n', 'a: "\\ud83d\\ude00"\n',
                                  'a: "\\U0000D800"\n', "a: [\"\\udfff\"]\n", '"\\ud800": 1\n'])
def test_escaped_surrogates_are_left_to_the_loader_the_renderer_uses(text):
    assert yamlfast.load(text) is None
    with pytest.raises(yaml.YAMLError):
        yaml.load(text, Loader=yaml.CSafeLoader)
