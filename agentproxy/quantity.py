"""Kubernetes resource quantities (``100m``, ``0.5``, ``256Mi``, ``1Gi``, ``1e3``).

Parsing follows the grammar of ``k8s.io/apimachinery/pkg/api/resource``: a signed
decimal number followed by an optional binary suffix (Ki..Ei), decimal suffix
(n, u, m, k, M..E) or decimal exponent (e3, E-2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)

QUANTITY_RULE = "must be a Kubernetes quantity such as 100m, 0.5, 256Mi or 1Gi"


def parse_quantity(text: str) -> Decimal:
    """Return the value of a quantity string in base units, or raise ``ValueError``."""
    match = _QUANTITY.match(str(text).strip()) if text is not None else None
    if not match or not str(text).strip():
        raise ValueError(QUANTITY_RULE)
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(QUANTITY_RULE) from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:  # an exponent; a lone "E" is exa
        return number.scaleb(int(suffix[1:]))
    return number * _DECIMAL[suffix]


def is_quantity(text: str) -> bool:
    """True when ``text`` parses as a Kubernetes quantity."""
    try:
        parse_quantity(text)
    except ValueError:
        return False
    return True


def request_above_limit(values: Mapping[str, str]) -> str | None:
    """``"cpu"`` or ``"memory"`` when ``values[KIND_request]`` exceeds ``values[KIND_limit]``
    (the first that does), None when both requests fit their limits. The one rule for the
    settings' defaults and for each agent's own resources."""
    for kind in ("cpu", "memory"):
        if parse_quantity(values[f"{kind}_request"]) > parse_quantity(values[f"{kind}_limit"]):
            return kind
    return None
