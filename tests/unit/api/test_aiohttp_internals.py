"""The aiohttp internals agentproxy uses are all in the installed aiohttp, and pyproject.toml pins
aiohttp to the minor versions where they are (an upgrade that moves one fails here, by name)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agentproxy.api import aiohttp_internals
from agentproxy.api.aiohttp_internals import INTERNALS, missing

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


@pytest.mark.parametrize("name", list(INTERNALS))
def test_the_installed_aiohttp_has_the_internal(name):
    assert INTERNALS[name](), f"aiohttp {aiohttp.__version__} no longer has {name}: see {aiohttp_internals.__name__}"


def test_missing_names_an_internal_that_moved(monkeypatch):
    assert missing() == []
    monkeypatch.delattr(web.StreamResponse, "_send_headers_immediately")
    assert missing() == ["aiohttp.web.StreamResponse._send_headers_immediately (read by StreamResponse._start)"]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_aiohttp_is_pinned_to_the_minor_version_installed():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    spec = next(d for d in dependencies if re.match(r"aiohttp\b", d))
    bounds = dict(re.findall(r"(>=|<)\s*([\d.]+)", spec))
    assert set(bounds) == {">=", "<"}, f"{spec!r}: aiohttp needs a lower and an upper bound"
    installed = _version(aiohttp.__version__)
    assert _version(bounds[">="]) <= installed < _version(bounds["<"]), (spec, aiohttp.__version__)
    assert _version(bounds["<"])[:2] == (_version(bounds[">="])[0], _version(bounds[">="])[1] + 1), \
        f"{spec!r}: the range spans more than one minor version"
