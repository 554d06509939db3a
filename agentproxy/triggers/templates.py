"""Prompt templates and match expressions: Jinja2 in its sandboxed environment, bounded.

A hook's prompt is a Jinja2 template rendered from the event's payload, and its ``when`` a Jinja2
expression over the same payload. Both come from settings but see hostile data (any sender that
knows the secret chooses the payload), so:

- they run in :class:`jinja2.sandbox.SandboxedEnvironment`: no attribute of Python's internals
  (``__class__``, ``mro``, a function's globals, a frame, ...) is reachable, at render time;
- a template or expression that *names* such an attribute is refused when settings load
  (:func:`internals_named`), so that an operator's mistake is told at start, naming the hook,
  rather than at the first delivery;
- ``*`` and ``**`` are checked before they run (a string repeated a billion times is refused,
  not allocated), ``range`` is bounded by the sandbox, and the rendered text is cut off at a
  bound (:class:`OutputTooLarge` past it).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    SandboxedEnvironment,
)

MAX_PROMPT = 16 * 1024
"""The longest rendered prompt, in characters (``triggers.prompt_max`` may lower or raise it)."""

MAX_SEQUENCE = 100_000
"""The longest string or list a ``*`` may make inside a template."""

MAX_EXPONENT = 64
"""The largest exponent of ``**`` inside a template."""

_UNSAFE = (UNSAFE_FUNCTION_ATTRIBUTES | UNSAFE_METHOD_ATTRIBUTES | UNSAFE_GENERATOR_ATTRIBUTES
           | UNSAFE_COROUTINE_ATTRIBUTES | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
           | {"mro", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_code", "format_map"})


class TemplateRefused(ValueError):
    """A template or expression that does not compile, or names Python internals."""


class OutputTooLarge(ValueError):
    """A rendered prompt past its bound."""


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox with ``*`` and ``**`` checked before they run."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """An attribute the sandbox forbids is an error, not an empty value: the prompt is refused."""
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} is refused")

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        """``left * right`` or ``left ** right``, refused when its result would be too large."""
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int) \
                        and len(seq) * count > MAX_SEQUENCE:
                    raise SecurityError(f"a sequence of more than {MAX_SEQUENCE} items is refused")
            return operator.mul(left, right)
        if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponents beyond {MAX_EXPONENT} are refused")
        return operator.pow(left, right)


ENV = BoundedSandbox(autoescape=False, keep_trailing_newline=True, undefined=ChainableUndefined)
"""The one environment of every hook's and schedule's templates (no loader: strings only). A field
the payload lacks, at any depth (``{{ comment.user.login }}`` of an event without a comment), is
empty rather than an error: payloads of one hook differ by event."""


def internals_named(source: str, expression: bool = False) -> str | None:
    """The first attribute of Python's internals that ``source`` names (``x.__class__``,
    ``x['__globals__']``, ``x|attr('mro')``), or None. :class:`TemplateRefused` when it is
    not a template (or with ``expression``, not an expression) at all."""
    try:
        tree = ENV.parse("{{ (" + source + ") }}" if expression else source)
    except TemplateError as exc:
        raise TemplateRefused(f"does not compile: {exc}") from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Const)):
        names: list[Any] = []
        if isinstance(node, nodes.Getattr):
            names.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            names.append(node.arg.value)
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            names.extend(a.value for a in node.args if isinstance(a, nodes.Const))
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and node.value.startswith("__"):
            names.append(node.value)  # a string built for a later lookup
        for name in names:
            if isinstance(name, str) and (name.startswith("_") or name in _UNSAFE):
                return name
    return None


class Prompt:
    """A checked template: :meth:`render` gives at most ``limit`` characters."""

    def __init__(self, source: str, limit: int = MAX_PROMPT) -> None:
        name = internals_named(source)
        if name is not None:
            raise TemplateRefused(f"reaches Python internals ({name!r}); templates may only read the payload")
        self.source = source
        self.limit = limit
        self._template = ENV.from_string(source)

    def render(self, context: Mapping[str, Any]) -> str:
        """The text for ``context``; :class:`OutputTooLarge` past the limit, :class:`TemplateRefused`
        when the template tries something the sandbox forbids (or fails on this payload)."""
        out: list[str] = []
        size = 0
        try:
            chunks: Iterator[str] = self._template.generate(**context)
            for chunk in chunks:  # stops as soon as the bound is passed: nothing larger is kept
                size += len(chunk)
                if size > self.limit:
                    raise OutputTooLarge(f"the rendered prompt is longer than {self.limit} characters")
                out.append(chunk)
        except SecurityError as exc:
            raise TemplateRefused(f"refused by the sandbox: {exc}") from None
        except TemplateError as exc:
            raise TemplateRefused(f"cannot be rendered from this payload: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            if isinstance(exc, OutputTooLarge):
                raise
            raise TemplateRefused(f"cannot be rendered from this payload: {exc}") from None
        return "".join(out)


class Condition:
    """A checked boolean expression over the payload (a hook's ``match.when``)."""

    def __init__(self, source: str) -> None:
        name = internals_named(source, expression=True)
        if name is not None:
            raise TemplateRefused(f"reaches Python internals ({name!r}); expressions may only read the payload")
        self.source = source
        self._expression = ENV.compile_expression(source, undefined_to_none=True)

    def holds(self, context: Mapping[str, Any]) -> bool:
        """True when the expression is true for ``context`` (an error on this payload: False)."""
        try:
            return bool(self._expression(**context))
        except (SecurityError, TemplateError, TypeError, ValueError, ArithmeticError, LookupError):
            return False
