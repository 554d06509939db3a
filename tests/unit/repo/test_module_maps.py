"""Every package's docstring is its module map: it names each of its modules and subpackages.

The maps replace a layout table that went stale; this keeps them whole as modules come and go.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = sorted(p.parent for p in (ROOT / "agentproxy").rglob("__init__.py")) + [ROOT / "testenv", ROOT / "benchmarks"]


def children(package: Path) -> set[str]:
    """The modules and subpackages of `package`, by name."""
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    return modules | {p.parent.name for p in package.glob("*/__init__.py")}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_package_docstring_names_every_module(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    missing = sorted(name for name in children(package) if f":mod:`.{name}`" not in doc)
    assert not missing, f"{package.relative_to(ROOT)}/__init__.py's docstring does not name {missing}"
