"""Fast paths for the block YAML that manifests are made of, exact to PyYAML or not taken.

:func:`load` reads one document of block mappings and sequences whose scalars are plain
words, numbers, booleans, nulls, one-line double-quoted strings and one-line flow lists of
those (what the templates render) as PyYAML's ``CSafeLoader`` reads it; :func:`dump_all`
writes dicts, lists, strings, ints, booleans and ``None`` exactly as ``yaml.dump_all(...,
Dumper=ManifestDumper, sort_keys=False, explicit_start=True, width=1_000_000)`` does. Each
returns ``None`` for anything else (anchors, tags, block scalars, floats, dates, long keys,
escapes of lone surrogates, ...), and the caller then uses PyYAML itself, so the result never
differs from PyYAML's, byte for byte; only the time does.

:class:`ManifestDumper` is PyYAML's safe dumper made to quote every string that any YAML 1.1
or 1.2 resolver would read as something else: Kubernetes decodes manifests with go-yaml's
YAML 1.1 rules (``y``, ``off``, ``1e3``, ``0o17``, ``2001-1-2`` are no strings there), which
PyYAML's resolver alone would write unquoted. PyYAML
builds every node as a Python object and decides each scalar's style from scratch; here
a line or a scalar that was seen before costs one dictionary read (lines and values
repeat from one agent to the next).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.emitter import Emitter
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

OTHER_TYPES = re.compile(r"""^(?:
    [yYnN] | [Yy]es | YES | [Nn]o | NO | [Tt]rue | TRUE | [Ff]alse | FALSE | [Oo]n | ON | [Oo]ff | OFF
  | ~ | [Nn]ull | NULL
  | [-+]?[0-9][0-9_]*                                    # decimal; YAML 1.1 octal (017); separators
  | [-+]?0[bBoOxX][0-9a-fA-F_]*                          # binary, YAML 1.2 octal (0o17), hex
  | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?     # YAML 1.1 sexagesimal (1:30)
  | [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?  # floats with a point (1., .5, 1.5e3)
  | [-+]?[0-9][0-9_]*[eE][-+]?[0-9]+                     # YAML 1.2 and go-yaml: 1e3 without a point
  | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
  | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt\ \t].*)?         # timestamps: every form starts with a date
  | << | =                                              # merge and value keys
)\Z""", re.X | re.S)
"""Plain scalars that some YAML 1.1 or 1.2 resolver (PyYAML's, go-yaml v2's and v3's, the YAML
1.2 core schema) reads as a boolean, null, number, timestamp or merge key rather than a string.
A superset: a string that matches is quoted, which every resolver reads as a string."""

_OTHER_TAG = "tag:agentproxy.io,2024:not-a-string"
"""The tag :class:`ManifestResolver` gives such scalars; it is never written (a string is
represented with the ``str`` tag, so a scalar that resolves otherwise is quoted instead)."""


class ManifestResolver(Resolver):
    """PyYAML's resolver, plus :data:`OTHER_TYPES` for the plain scalars other resolvers would
    not read as strings."""


ManifestResolver.add_implicit_resolver(_OTHER_TAG, OTHER_TYPES, None)


class ManifestDumper(yaml.SafeDumper, ManifestResolver):
    """``yaml.SafeDumper`` quoting every string in :data:`OTHER_TYPES`."""


_resolver = Resolver()
"""How PyYAML's loaders read plain scalars (reading follows PyYAML exactly)."""
_write_resolver = ManifestResolver()
"""How :class:`ManifestDumper` decides whether a string may stay plain."""
_constructor = SafeConstructor()


class _Unhandled(Exception):
    """Outside the subset: PyYAML decides."""


# --- reading -----------------------------------------------------------------------------------------

_plain_values: dict[str, Any] = {}
_lines: dict[str, tuple] = {}


def _plain(text: str) -> Any:
    """A plain scalar's value, resolved as PyYAML's SafeLoader resolves it."""
    try:
        return _plain_values[text]
    except KeyError:
        pass
    if len(_plain_values) > 50_000:
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
    if len(_lines) > 50_000:
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


# --- writing -----------------------------------------------------------------------------------------

_emitter = Emitter(None, width=1_000_000)  # type: ignore[arg-type]  # no stream: only its scalar analysis is used
_SIMPLE_KEY = 128 - len("!!str")
"""PyYAML writes a key as a simple key (``key: value``) only while its length plus that of its
tag's short form (``!!str``, ``!!int``: five characters) is below 128; longer ones become complex
keys (``? key``), left to PyYAML."""
_styles: dict[tuple[str, bool], tuple[str, str]] = {}
_BLOCK_INDICATOR = re.compile(r"^(?:---|\.\.\.|[#,\[\]{}&*!|>'\"%@`]|[?:-](?: |$))|: | #|:$|^ | $")
"""What keeps a one-line printable ASCII string from PyYAML's plain style in block context."""
_DQ_ESCAPES = {"\0": "0", "\x07": "a", "\x08": "b", "\t": "t", "\n": "n", "\x0b": "v", "\x0c": "f", "\r": "r",
               "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N", "\xa0": "_", "\u2028": "L", "\u2029": "P"}


def _style(value: str, key: bool) -> tuple[str, str]:
    """How PyYAML writes the string ``value`` in block context: ``("plain"|"single"|"double", text)``."""
    found = _styles.get((value, key))
    if found is not None:
        return found
    if len(_styles) > 50_000:
        _styles.clear()
    if len(value) > _MAX_SCALAR:
        raise _Unhandled
    if value and value.isascii() and value.isprintable():
        # One line of printable ASCII (most values): PyYAML's analysis comes down to whether an
        # indicator or an outer space rules out the plain style; quoting in single quotes is
        # always possible.
        if key and len(value) >= _SIMPLE_KEY:
            raise _Unhandled
        plain, single = not _BLOCK_INDICATOR.search(value), True
    else:
        analysis = _emitter.analyze_scalar(value)
        if key and (len(value) >= _SIMPLE_KEY or analysis.multiline or analysis.empty):
            raise _Unhandled  # PyYAML writes such a key as a complex key ("? ")
        plain, single = analysis.allow_block_plain, analysis.allow_single_quoted
    if plain and _write_resolver.resolve(ScalarNode, value, (True, False)) == _STR:
        found = ("plain", value)
    elif single:
        found = ("single", value.replace("'", "''"))
    else:
        found = ("double", _double(value))
    _styles[(value, key)] = found
    return found


def _double(value: str) -> str:
    out = ['"']
    for ch in value:
        escape = _DQ_ESCAPES.get(ch)
        if escape is not None:
            out.append("\\" + escape)
        elif "\x20" <= ch <= "\x7e":
            out.append(ch)
        elif ch == "\ufeff" or ch <= "\xff":
            out.append(f"\\x{ord(ch):02X}" if ch <= "\xff" else "\\uFEFF")
        elif ch <= "\uffff":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    out.append('"')
    return "".join(out)


def _scalar_text(value: Any, key: bool, indent: int) -> str:
    """``value`` as PyYAML writes it; ``indent`` is where a quoted line break continues."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        text = str(value)
        if key and len(text) >= _SIMPLE_KEY:
            raise _Unhandled
        return text
    if kind is not str:
        raise _Unhandled
    style, text = _style(value, key)
    if style != "single":
        return text
    if "\n" not in text:
        return f"'{text}'"
    # A line break inside single quotes is written as an empty line (one break alone would
    # read back as a space), and what follows continues at the indentation of the scalar.
    pad = " " * indent
    out = ["'"]
    lines = text.split("\n")
    for n, part in enumerate(lines):
        if n:
            out.append("\n")
        out.append(part)
    joined = "".join(out)
    # Runs of breaks: k breaks in the value are written as k+1 line ends, then the indent.
    rebuilt = re.sub(r"\n+", lambda m: "\n" * (len(m[0]) + 1) + pad, joined)
    return rebuilt + "'"


def _write_mapping(out: list[str], mapping: dict, indent: int, first_inline: bool) -> None:
    pad = " " * indent
    for n, (key, value) in enumerate(mapping.items()):
        if type(key) is not str and key is not None and type(key) not in (int, bool):
            raise _Unhandled
        lead = "" if first_inline and n == 0 else pad
        key_text = _scalar_text(key, True, indent + 2)
        kind = type(value)
        if kind is dict:
            if value:
                out.append(f"{lead}{key_text}:\n")
                _write_mapping(out, value, indent + 2, False)
            else:
                out.append(f"{lead}{key_text}: {{}}\n")
        elif kind is list:
            if value:
                out.append(f"{lead}{key_text}:\n")
                _write_sequence(out, value, indent)  # PyYAML does not indent a sequence in a mapping
            else:
                out.append(f"{lead}{key_text}: []\n")
        else:
            out.append(f"{lead}{key_text}: {_scalar_text(value, False, indent + 2)}\n")


def _write_sequence(out: list[str], sequence: list, indent: int) -> None:
    pad = " " * indent
    for item in sequence:
        kind = type(item)
        if kind is dict:
            if item:
                out.append(f"{pad}- ")
                _write_mapping(out, item, indent + 2, True)
            else:
                out.append(f"{pad}- {{}}\n")
        elif kind is list:
            raise _Unhandled  # a sequence in a sequence
        else:
            out.append(f"{pad}- {_scalar_text(item, False, indent + 2)}\n")


def dump_all(documents: list[Any]) -> str | None:
    """The documents as :func:`pyyaml_dump_all` writes them, or ``None`` when one is outside the subset."""
    out: list[str] = []
    try:
        for document in documents:
            if type(document) is not dict or not document:
                return None
            out.append("---\n")
            _write_mapping(out, document, 0, False)
    except (_Unhandled, RecursionError):
        return None
    return "".join(out)


def pyyaml_dump_all(documents: list[Any]) -> str:
    """The documents as PyYAML writes them with :class:`ManifestDumper`: what :func:`dump_all`
    matches byte for byte, and where it hands over."""
    return yaml.dump_all(documents, Dumper=ManifestDumper, sort_keys=False, explicit_start=True,
                         width=1_000_000, allow_unicode=False)
