"""The documentation: the site in docs/ builds in strict mode, and no internal link is broken.

MkDocs checks the site's own links (pages and anchors) when it builds it in strict mode, as
`bin/just docs` does; the README is read on its own (on a forge, or in an editor), so its
relative links and anchors are checked here against the files they name. External URLs are
never fetched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Build the site of `config` into `site` as `bin/just docs` does (strict)."""
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=300)


def github_slug(heading: str) -> str:
    """The anchor a forge gives a Markdown heading: lower case, punctuation dropped, spaces to `-`."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def links(markdown: str) -> list[str]:
    """The targets of every inline link and image outside code."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return _LINK.findall(prose)


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` whose file, or whose anchor in a Markdown file, does not exist."""
    broken = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: never fetched
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = _HEADING.findall(_FENCE.sub("", file.read_text()))
            if anchor not in {github_slug(h) for h in headings}:
                broken.append(target)
    return broken


def test_the_site_builds_in_strict_mode(tmp_path):
    site = tmp_path / "site"
    result = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr
    built = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert {f"{name}/index.html" for name in pages} <= built
    assert "index.html" in built


@pytest.mark.parametrize("link", ["[gone](no-such-page.md)", "[gone](configuration.md#no-such-anchor)",
                                  "[gone](#no-such-anchor-here)"])
def test_a_broken_link_fails_the_build(tmp_path, link):
    """The build above proves something: the same site with one broken link fails."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "http-api.md"
    page.write_text(page.read_text() + f"\nSee {link}.\n")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    target = link.split("(")[1].rstrip(")")
    assert target.lstrip("#").split("#")[-1] in result.stderr


def test_the_readme_links_resolve():
    assert links(README.read_text()), "the README links to the docs"
    assert broken_links(README) == []


def test_the_link_check_finds_a_broken_readme_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## The two commands\n")
    readme = tmp_path / "README.md"
    readme.write_text("[ok](docs/page.md#the-two-commands) [no](docs/gone.md) [bad](docs/page.md#nope)\n"
                      "`[code](docs/gone.md)` [web](https://example.invalid/x)\n")
    assert broken_links(readme) == ["docs/gone.md", "docs/page.md#nope"]


def test_the_readme_links_every_docs_page():
    linked = {Path(t.partition("#")[0]).name for t in links(README.read_text()) if t.startswith("docs/")}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"


def test_the_readme_shows_the_two_commands_ci_runs():
    """CI runs the README's test command (`.ci/run`); the README shows both commands in a shell block."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.M | re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert "bin/just run" in commands and "bin/just test" in commands
    assert re.search(r"^PYTHON=\S+ bin/just test$", (ROOT / ".ci" / "run").read_text(), re.M)
