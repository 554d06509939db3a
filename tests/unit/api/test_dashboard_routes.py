"""The dashboard's files: served from the package with a strict Content-Security-Policy,
open without a key (the API behind them is not), and ``/`` leads to them."""

from __future__ import annotations

import re

from agentproxy.api import ui

from .support import KEYS


async def test_files_are_served_with_their_type_and_a_strict_policy(api):
    assert set(ui.FILES) >= {"/ui/", "/ui/app.js", "/ui/api.js", "/ui/style.css"}
    for path, (body, content_type) in ui.FILES.items():
        response = await api.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Type"] == content_type
        assert await response.read() == body
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_root_redirects_to_the_dashboard(api):
    for path in ("/", "/ui"):
        response = await api.get(path, allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/ui/"
    assert (await api.get("/ui/no-such-file.js")).status == 404


async def test_the_page_is_open_but_the_api_is_not(make_api):
    keyed = await make_api(KEYS)
    assert (await keyed.get("/ui/")).status == 200
    assert (await keyed.get("/ui/app.js")).status == 200
    assert (await keyed.get("/", allow_redirects=False)).status == 302
    for path in ("/agents", "/ui/../agents", "/ui/%2e%2e/agents", "/events"):
        assert (await keyed.get(path)).status in (401, 404), path


def test_no_inline_script_style_or_third_party_source():
    html = ui.FILES["/ui/"][0].decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and "://" not in attrs and not body.strip() for attrs, body in scripts)
    assert re.search(r"<[^>]+\son[a-z]+\s*=", html) is None  # no event handler attributes
    assert "<style" not in html and 'style="' not in html
    for body, _ in ui.FILES.values():
        text = body.decode(errors="replace")
        assert "https://" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text
