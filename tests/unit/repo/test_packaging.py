"""The default templates are found from a source checkout and travel inside
the built wheel, where the installed package finds them too."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agentproxy.render import SHARED, TEMPLATES, default_templates_dir

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_default_templates_dir_in_a_checkout():
    directory = default_templates_dir()
    assert directory.is_dir()
    names = {p.name for p in directory.glob("*.yaml.j2")}
    assert {filename for filename, _, _ in TEMPLATES} <= names
    assert directory == REPO_ROOT / "templates" or directory == REPO_ROOT / "agentproxy" / "templates"


@pytest.mark.slow
def test_wheel_carries_the_templates(tmp_path):
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", "-w", str(out), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("agentproxy-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        for filename in [*SHARED, *(filename for filename, _, _ in TEMPLATES)]:
            member = f"agentproxy/templates/{filename}"
            assert member in names, member
            assert wheel.read(member) == (REPO_ROOT / "templates" / filename).read_bytes()
        assert "agentproxy/render.py" in names
        assert "agentproxy/ui/static/index.html" in names  # the dashboard's files
        assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
        installed = tmp_path / "installed"
        wheel.extractall(installed)

    # The unpacked wheel, first on the path, finds its own packaged templates.
    code = ("import agentproxy, agentproxy.render as r; "
            "print(agentproxy.__file__); print(r.default_templates_dir())")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    module_file, templates = proc.stdout.splitlines()
    assert Path(module_file).is_relative_to(installed)
    assert Path(templates) == installed / "agentproxy" / "templates"
