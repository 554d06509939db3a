"""A fast path for reading the block YAML that rendered manifests are made of, exact to
PyYAML or not taken.

:func:`load` reads one document of block mappings and sequences whose scalars are plain
words, numbers, booleans, nulls, one-line double-quoted strings and one-line flow lists of
those (what the templates render) as PyYAML's ``CSafeLoader`` reads it, and returns ``None``
for anything else (anchors, tags, block scalars, floats, dates, escapes of lone surrogates,
...): the caller, :func:`agentproxy.render.render_agent`, then uses PyYAML itself, so the
result never differs from PyYAML's; only the time does. PyYAML builds every node as a Python
object; here a line that was seen before costs one dictionary read (lines repeat from one
agent to the next). Every create renders a spec not rendered before, which no cache of
rendered manifests can spare, and this path makes that render several times faster.
"""

from __future__ import annotations

import re
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_PLAIN = re.compile(r"[^\s\-?:,\[\]{}#&*!|>'\"%@`][^#\t]*")
"""A plain scalar of the subset: no indicator first, no comment, no tab."""
_KEY_PLAIN = re.compile(r"([^\s\-?:,\[\]{}#&*!|>'\"%@`][^#\t:]*):(?: (.*))?")
_KEY_DQ = re.compile(r'("(?:[^"\\]|\\.)*"):(?: (.*))?')
_REFUSED_TEXT = re.compile("[\t\r\ufeff]|[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
"""Tabs, carriage returns, a byte order mark (left to PyYAML) and characters PyYAML refuses."""
_REFUSED_ASCII = re.compile("[\x00-\x09\x0b-\x1f\x7f]")
"""The same in ASCII text (a much faster search)."""
_DQ = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ITEM = r'"(?:[^"\\]|\\.)*"|[A-Za-z0-9_./][A-Za-z0-9_./+=-]*'
_FLOW = re.compile(rf"\[ *(?:(?:{_ITEM}) *(?:, *(?:{_ITEM}) *)*)?\]")
_FLOW_ITEM = re.compile(_ITEM)
"""A flow list of quoted strings and plain words, on one line."""
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0abtnvfre \"/\\N_LP\t])")
_UNESCAPE = {"0": "\0", "a": "\x07", "b": "\x08", "t": "\t", "\t": "\t", "n": "\n", "v": "\x0b", "f": "\x0c",
             "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
             "L": "\u2028", "P": "\u2029"}
_SEQ, _MAP, _SCALAR = 0, 1, 2
_MAX_SCALAR = 100_000
"""Longer scalars go to PyYAML (its line width could come into play)."""

_resolver = Resolver()
"""How PyYAML's loaders read plain scalars (reading follows PyYAML exactly)."""
_constructor = SafeConstructor()


class _Unhandled(Exception):
    """Outside the subset: PyYAML decides."""


_CACHED_AT_MOST = 4_096
"""Entries each cache below holds before it starts again. The lines that repeat from one agent to
the next are a few hundred; the rest name one agent and are never read again (a create renders
each spec once), so a larger cache only keeps those: 50,000 lines held 13 MB."""
_plain_values: dict[str, Any] = {}
_lines: dict[str, tuple] = {}


def _plain(text: str) -> Any:
    """A plain scalar's value, resolved as PyYAML's SafeLoader resolves it."""
    try:
        return _plain_values[text]
    except KeyError:
        pass
    if len(_plain_values) >= _CACHED_AT_MOST:
        _plain_values.clear()
    tag = _resolver.resolve(ScalarNode, text, (True, False))
    if tag == _STR:
        value: Any = text
    elif tag == _INT:
        value = _constructor.construct_yaml_int(ScalarNode(tag, text))
    elif tag == _BOOL:
        value = _constructor.construct_yaml_bool(ScalarNode(tag, text))
    elif tag == _NULL:
        value = None
    else:  # floats, dates, merge keys, ...
        raise _Unhandled
    _plain_values[text] = value
    return value


def _double_quoted(body: str) -> str:
    if "\\" not in body:
        return body
    if _ESCAPE.sub("", body).count("\\"):
        raise _Unhandled  # an escape PyYAML refuses: let it say so
    return _ESCAPE.sub(_unescape, body)


def _unescape(match: re.Match[str]) -> str:
    known = _UNESCAPE.get(match[1])
    if known is not None:
        return known
    code = int(match[1][1:], 16)
    if 0xD800 <= code <= 0xDFFF:
        # A lone surrogate (or half of a pair): libyaml refuses it, the pure-Python reader takes
        # it; left to the loader that reads the rest.
        raise _Unhandled
    return chr(code)


def _scalar(text: str) -> Any:
    """A scalar written on one line (the text stripped of spaces)."""
    if text.startswith('"'):
        match = _DQ.fullmatch(text)
        if match is None:
            raise _Unhandled
        return _double_quoted(match[1])
    if text.startswith("["):
        return _flow_list(text)
    if _PLAIN.fullmatch(text) is None or ": " in text or text.endswith(":") or " #" in text:
        raise _Unhandled
    return _plain(text)


def _flow_list(text: str) -> list[Any]:
    if _FLOW.fullmatch(text) is None:
        raise _Unhandled
    return [_scalar(item) for item in _FLOW_ITEM.findall(text)]


_NONE = object()
"""A ``key:`` or ``-`` with nothing after it on its line."""
_REFUSED = (object(),)
"""The tokens of a line outside the subset."""


def _value(text: str) -> Any:
    """A scalar or flow list as a token keeps it: lists as tuples (a fresh list is made per use)."""
    value = _scalar(text)
    return tuple(value) if type(value) is list else value


def _tokens(line: str) -> tuple:
    """A line as (indent, kind, key, value) tokens; ``- `` items become a marker and their content.
    Blank and comment lines have none."""
    if len(_lines) >= _CACHED_AT_MOST:
        _lines.clear()
    try:
        found = _line_tokens(line)
    except _Unhandled:
        found = _REFUSED
    _lines[line] = found
    return found


def _line_tokens(line: str) -> tuple:
    stripped = line.lstrip(" ")
    if not stripped or stripped.startswith("#"):
        return ()
    if line.startswith(("---", "...", "%")) or len(line) > _MAX_SCALAR:
        raise _Unhandled
    out: list[tuple[int, int, str | None, object]] = []
    indent = len(line) - len(stripped)
    rest = stripped.rstrip(" ")
    while rest == "-" or rest.startswith("- "):
        out.append((indent, _SEQ, None, _NONE))
        stripped = rest[1:].lstrip(" ")
        indent += len(rest) - len(stripped)
        rest = stripped
    if rest:
        match = _KEY_DQ.fullmatch(rest) if rest.startswith('"') else _KEY_PLAIN.fullmatch(rest)
        if match and not match[1].endswith(" "):
            key = _double_quoted(match[1][1:-1]) if rest.startswith('"') else _plain(match[1])
            value = (match[2] or "").strip()
            out.append((indent, _MAP, key, _value(value) if value else _NONE))
        else:
            out.append((indent, _SCALAR, None, _value(rest)))
    return tuple(out)


def load(text: str) -> Any:
    """The one document ``text`` holds, or ``None`` when it is outside the subset (or not YAML)."""
    if (_REFUSED_ASCII if text.isascii() else _REFUSED_TEXT).search(text):
        return None
    tokens: list[tuple] = []
    extend = tokens.extend
    cache = _lines
    for line in text.split("\n"):
        found = cache.get(line)
        if found is None:
            found = _tokens(line)
        if found is _REFUSED:
            return None
        extend(found)
    if not tokens or tokens[0][0] != 0:
        return None
    try:
        value, end = _block(tokens, 0)
    except (_Unhandled, RecursionError):
        return None
    return value if end == len(tokens) else None


def _block(tokens: list, i: int) -> tuple[Any, int]:
    indent, kind, _, value = tokens[i]
    if kind == _SCALAR:
        return (list(value) if type(value) is tuple else value), i + 1
    if kind == _MAP:
        return _mapping(tokens, i, indent)
    return _sequence(tokens, i, indent)


def _value_after(tokens: list, i: int, indent: int, owner_is_key: bool) -> tuple[Any, int]:
    """What follows a ``key:`` or ``-`` with nothing after it: a deeper block, an indentless
    sequence (after a key), or null."""
    if i < len(tokens):
        deeper = tokens[i][0] > indent
        if deeper or (owner_is_key and tokens[i][0] == indent and tokens[i][1] == _SEQ):
            return _block(tokens, i)
    return None, i


def _mapping(tokens: list, i: int, indent: int) -> tuple[dict, int]:
    out: dict[Any, Any] = {}
    n = len(tokens)
    while i < n:
        token = tokens[i]
        if token[0] != indent or token[1] != _MAP:
            break
        value = token[3]
        if value is _NONE:
            out[token[2]], i = _value_after(tokens, i + 1, indent, True)
        else:
            i += 1
            if i < n and tokens[i][0] > indent:
                raise _Unhandled  # a scalar continued on the next line
            out[token[2]] = list(value) if type(value) is tuple else value
    if i < n and tokens[i][0] > indent:
        raise _Unhandled
    return out, i


def _sequence(tokens: list, i: int, indent: int) -> tuple[list, int]:
    out = []
    n = len(tokens)
    while i < n and tokens[i][0] == indent and tokens[i][1] == _SEQ:
        value, i = _value_after(tokens, i + 1, indent, False)
        out.append(value)
    if i < n and tokens[i][0] > indent:
        raise _Unhandled
    return out, i
