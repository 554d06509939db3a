"""The rules of a create request as JSON Schema, from the settings the server runs with.

Every value such a schema allows, the server accepts: agent types the backend can run,
environment names it does not refuse (reserved prefixes; in k8s mode names that look like
secrets), and resources within the configured limits. Quantities are given as patterns
of whole numbers with a unit (``250m``, ``256Mi``) that are exactly the values within
bounds; a request that stays below its limit is described by the one rule JSON Schema can
state: a request no larger than the default request whenever a limit is given, and a
limit no smaller than it. The server accepts more (``0.5``, any request up to its limit);
the descriptions say what.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from ..quantity import parse_quantity
from ..spec import (
    ENV_NAME_RULE,
    MAX_ENV_NAME,
    MAX_ENV_VALUE,
    MAX_ENV_VARS,
    MAX_MESSAGE,
    RESERVED_ENV_PREFIXES,
    TEXT_RULE,
)

TEXT_PATTERN = "^[^\\u0000]*$"
"""The part of :data:`~agentproxy.spec.TEXT_RULE` a pattern can say: no NUL (JSON Schema strings
are Unicode text, so lone surrogates are outside every schema already)."""

CPU_UNITS = (("m", Decimal("0.001")), ("", Decimal(1)))
BYTE_UNITS = (("", Decimal(1)), ("k", Decimal(10**3)), ("M", Decimal(10**6)), ("G", Decimal(10**9)),
              ("Ki", Decimal(2**10)), ("Mi", Decimal(2**20)), ("Gi", Decimal(2**30)), ("Ti", Decimal(2**40)))
SECRET_WORDS = ("KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS")


def int_range(low: int, high: int) -> str:
    """A regular expression (without anchors) of the decimal integers ``low``..``high``
    (``1 <= low <= high``), written without leading zeros, with ASCII digits only."""
    parts = []
    start = low
    while start <= high:
        # The largest block start..end that is one digit position running over a range,
        # followed by free digits: 120-199 is 1[2-9][0-9].
        free = 0
        while start % 10 ** (free + 1) == 0 and start + 10 ** (free + 1) - 1 <= high:
            free += 1
        step = 10 ** free
        end = start + step - 1
        while end + step <= high and (end + 1) % (step * 10) != 0:
            end += step
        text_start, text_end = str(start), str(end)
        prefix, first, last = text_start[:-free - 1], text_start[-free - 1], text_end[-free - 1]
        digit = first if first == last else f"[{first}-{last}]"
        parts.append(prefix + digit + ("[0-9]" * free))
        start = end + 1
    return "|".join(parts)


def quantity_pattern(low: Decimal | None, high: Decimal, units: Iterable[tuple[str, Decimal]]) -> str | None:
    """A pattern of the quantities ``N<unit>`` (N a whole number) above ``low`` (or above zero)
    and at most ``high``; None when there is none."""
    choices = []
    for suffix, size in units:
        first = 1 if low is None else max(1, math.ceil(low / size))
        last = math.floor(high / size)
        if first <= last:
            choices.append(f"(?:{int_range(first, last)}){re.escape(suffix)}")
    return f"^(?:{'|'.join(choices)})$" if choices else None


def quantity_schema(low: str | None, high: str, units: Iterable[tuple[str, Decimal]], description: str) -> dict:
    """The schema of one quantity between ``low`` (or above zero) and ``high``."""
    low_value = None if low is None else parse_quantity(low)
    high_value = parse_quantity(high)
    pattern = quantity_pattern(low_value, high_value, units)
    forms: list[dict[str, Any]] = []
    if pattern:
        forms.append({"type": "string", "pattern": pattern})
    whole = math.floor(high_value)
    if whole >= 1 and (low_value is None or math.ceil(low_value) <= whole):
        forms.append({"type": "integer", "minimum": 1 if low_value is None else max(1, math.ceil(low_value)),
                      "maximum": whole})
    schema: dict[str, Any] = forms[0] if len(forms) == 1 else {"oneOf": forms}
    if not forms:
        schema = {"not": {}}  # nothing fits: the field cannot be given
    return {**schema, "description": description}


def resources_schema(res: Any) -> dict[str, Any]:
    """The ``resources`` object of a create request, within ``k8s_mode.resources``."""
    def q(low: str | None, high: str, units: Iterable[tuple[str, Decimal]], text: str) -> dict:
        return quantity_schema(low, high, units, text)

    cpu, memory = f"at most {res.cpu_limit} (k8s_mode.resources.cpu_limit)", \
        f"at most {res.memory_limit} (k8s_mode.resources.memory_limit)"
    properties = {
        "cpu_request": q(None, res.cpu_limit, CPU_UNITS, f"CPU request, above 0 and {cpu}; default {res.cpu_request}."),
        "cpu_limit": q(res.cpu_request, res.cpu_limit, CPU_UNITS,
                       f"CPU limit, {cpu} and at least the request (default {res.cpu_request}); default {res.cpu_limit}."),
        "memory_request": q(None, res.memory_limit, BYTE_UNITS,
                            f"Memory request, above 0 and {memory}; default {res.memory_request}."),
        "memory_limit": q(res.memory_request, res.memory_limit, BYTE_UNITS,
                          f"Memory limit, {memory} and at least the request (default {res.memory_request}); "
                          f"default {res.memory_limit}."),
        "storage_size": q(None, res.storage_size, BYTE_UNITS,
                          f"Size of the data volume, above 0 and at most {res.storage_size} "
                          "(k8s_mode.resources.storage_size)."),
    }
    pairs = []
    for kind, default in (("cpu", res.cpu_request), ("memory", res.memory_request)):
        units = CPU_UNITS if kind == "cpu" else BYTE_UNITS
        pairs.append({"anyOf": [
            {"not": {"required": [f"{kind}_limit"]}},
            {"required": [f"{kind}_limit"],
             "properties": {f"{kind}_request": q(None, default, units, "With a limit: at most the default request.")}},
        ]})
    return {"type": "object", "additionalProperties": False, "properties": properties, "allOf": pairs,
            "description": "Requests and limits (Kubernetes quantities), each within the configured limits; a "
                           "request may not exceed its limit. Whole numbers with a unit are described exactly; the "
                           "server also takes other quantities (0.5, 1.5Gi) within the same limits."}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


def env_schema(secrets_refused: bool) -> dict[str, Any]:
    """The ``env`` object: names that are valid, not reserved (and in k8s mode do not look like
    secrets), values of bounded length."""
    reserved = "|".join(re.escape(p) for p in RESERVED_ENV_PREFIXES)
    guards = f"(?!{reserved})"
    if secrets_refused:
        words = "|".join(_any_case(w) for w in SECRET_WORDS)
        guards += f"(?!(?:[A-Za-z0-9_]*_)?(?:{words})(?:_[A-Za-z0-9_]*)?$)"
    text = f"Environment variables of the agent: names {ENV_NAME_RULE}, not starting with " \
           f"{' or '.join(RESERVED_ENV_PREFIXES)}"
    if secrets_refused:
        text += ", and (k8s mode) not containing a word that names a secret (KEY, TOKEN, SECRET, PASSWORD, ...): " \
                "those belong in k8s_mode.secret_name"
    return {"type": "object", "maxProperties": MAX_ENV_VARS, "description": text + ".",
            "propertyNames": {"type": "string", "maxLength": MAX_ENV_NAME,
                              "pattern": f"^{guards}[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {"type": "string", "maxLength": MAX_ENV_VALUE, "pattern": TEXT_PATTERN,
                                     "description": f"A value {TEXT_RULE}."}}


def message_schema() -> dict[str, Any]:
    return {"type": "string", "maxLength": MAX_MESSAGE, "pattern": TEXT_PATTERN,
            "description": f"First prompt sent to the agent; {TEXT_RULE}."}
