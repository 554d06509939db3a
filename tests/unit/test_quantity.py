"""Parsing of Kubernetes resource quantities."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agentproxy.quantity import QUANTITY_RULE, is_quantity, parse_quantity


@pytest.mark.parametrize("text,value", [
    ("100m", Decimal("0.1")),
    ("0.5", Decimal("0.5")),
    ("2", Decimal(2)),
    (".5", Decimal("0.5")),
    ("1.", Decimal(1)),
    ("256Mi", Decimal(256 * 2**20)),
    ("1Gi", Decimal(2**30)),
    ("1Ki", Decimal(1024)),
    ("1Ei", Decimal(2**60)),
    ("1k", Decimal(1000)),
    ("1M", Decimal(10**6)),
    ("1G", Decimal(10**9)),
    ("1E", Decimal(10**18)),
    ("5n", Decimal("5e-9")),
    ("5u", Decimal("5e-6")),
    ("1e3", Decimal(1000)),
    ("1E-2", Decimal("0.01")),
    ("+1e+2", Decimal(100)),
    ("-1", Decimal(-1)),
])
def test_parses(text, value):
    assert parse_quantity(text) == value
    assert is_quantity(text)


@pytest.mark.parametrize("text", [
    "", " ", "m", "Mi", "1K", "1Gb", "1GB", "1 Gi", "1mi", "1e", "1e2.5", "1..2", "abc", "1Gi1", "0x10", None,
])
def test_rejects(text):
    with pytest.raises(ValueError) as info:
        parse_quantity(text)
    assert str(info.value) == QUANTITY_RULE
    assert not is_quantity(text)


def test_units_compare_across_suffixes():
    assert parse_quantity("1Gi") == parse_quantity("1024Mi")
    assert parse_quantity("500m") < parse_quantity("1")
    assert parse_quantity("1G") < parse_quantity("1Gi")
