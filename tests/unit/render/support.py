"""Hostile values and YAML strategies shared by the tests of rendering and of its YAML."""

from __future__ import annotations

from hypothesis import strategies as st

# Values a user or an operator may give that would change a manifest's structure if they were
# pasted into YAML or a template unescaped.
NASTY = [
    "line one\nINJECTED: true",
    "key: value",
    "a #comment",
    "# whole comment",
    '"double" and \'single\' quotes',
    "{{ names.statefulset }} {% if true %}x{% endif %}",
    "line\u2028separator\u2029paragraph",
    "next\x85line",
    "emoji \U0001F600 and \u00e9",
    "back\\slash \\n \\\\ \\u0041",
    "---\nkind: Secret",
    "...\n---",
    "- list\n- item",
    "&anchor *alias !!python/object:os.system",
    "tab\there\rcarriage",
    " leading and trailing ",
    "",
    "null",
    "true",
    "0x10",
    "\x00\x07\x1b[31m\x7f",
    "${oc.env:HOME} ???",
]


# Characters that decide styles and escapes: indicators, quotes, breaks of every kind,
# non-ASCII, characters YAML must escape, and words that resolve to other types.
PIECES = st.sampled_from(list("aZ9 :#-'\"\\\n\t{}[],&*!|>%@`?=~./") + [
    "\x85", "\u2028", "\xe9", "\U0001F600", "\ufeff", "\x00", "\xa0", "\x1b", "\n\n", "true", "null", "1",
    "0x1F", "1:30", "yes", "~", "1.5", "- ", "--- ", "<<", "a: b", " #"])
TEXT = st.lists(PIECES, max_size=8).map("".join)
KEYS = st.one_of(TEXT, st.sampled_from(["name", "app.kubernetes.io/name", "x y", "1", "true", "-k", "k:v"]))
SCALARS = st.one_of(TEXT, st.integers(-10**6, 10**6), st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
DOCUMENTS = st.lists(st.dictionaries(KEYS, VALUES, min_size=1, max_size=5), min_size=1, max_size=3)
