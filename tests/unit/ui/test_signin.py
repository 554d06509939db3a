"""Sign-in in Chromium through a real OpenID provider's login page into the dashboard, and an
agent created with a profile chosen in the form (the profiles offered are those of the person's
groups, from the provider's groups claim)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.oidc_provider import CLI_CLIENT_ID, CLIENT_ID, SECRET_ENV, USERS, Provider, running_provider

from ..live_server import LiveServer, running_server
from .support import READY_TIMEOUT, real_errors, row

pytestmark = pytest.mark.slow

PROFILES = {"small": {"agent": "echo", "description": "the demo agent"},
            "ml-echo": {"agent": "echo", "description": "for ml", "groups": ["ml"]}}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with running_provider(tmp_path_factory.mktemp("oidc-ui")) as running:
        yield running


@pytest.fixture(scope="module")
def signin_server(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = {"server": {"oidc": {"issuer": provider.issuer, "client_id": CLIENT_ID, "cli_client_id": CLI_CLIENT_ID,
                                    "client_secret_env": SECRET_ENV}},
                "teams": {"admin_group": "platform", "profiles": PROFILES, "default_profile": "small"}}
    with running_server(tmp_path_factory.mktemp("serve-ui-oidc"), settings=settings,
                        env={SECRET_ENV: provider.secret}) as live:
        yield live


def sign_in(page, server: LiveServer, user: str) -> int:
    """Sign ``user`` in from the dashboard through the provider's page; the clicks it took."""
    page.goto(server.url + "/ui/")
    expect(page.locator("#login-form")).to_be_visible()
    page.get_by_role("link", name="sign in with your identity provider").click()
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(USERS[user][0])
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#signed-in-as")).to_have_text(f"signed in as {user}")
    return 2


def test_sign_in_through_the_provider_and_create_an_agent_with_a_chosen_profile(signin_server, provider, page,
                                                                                 browser, shot):
    started = time.monotonic()
    clicks = sign_in(page, signin_server, "alice")
    shot("20-signed-in-with-the-provider")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["agentproxy_session"]["httpOnly"] and cookies["agentproxy_session"]["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # the page itself cannot read the session
    profile = page.get_by_label("Profile")
    expect(profile).to_be_visible()
    assert sorted(profile.locator("option").all_inner_texts()) == ["ml-echo: for ml", "small: the demo agent"]
    expect(profile).to_have_value("small")  # the default profile is chosen first
    profile.select_option("ml-echo")
    page.get_by_label("Session").fill("signed")
    page.get_by_label("Agent id").fill("p1")
    page.get_by_role("button", name="Create").click()
    clicks += 1
    expect(row(page, "signed", "p1").locator(".badge")).to_have_text("ready", timeout=READY_TIMEOUT)
    elapsed = time.monotonic() - started
    shot("21-agent-of-the-chosen-profile")
    agent = page.evaluate("""async () => (await fetch("/sessions/signed/agents/p1",
                                             {credentials: "same-origin"})).json()""")
    assert agent["owner"] == "alice" and agent["profile"] == "ml-echo", agent
    print(json.dumps({"sign_in_to_first_agent_ready_seconds": round(elapsed, 2), "clicks": clicks}))
    # carol is not in ml: the form does not offer ml-echo to her.
    other = browser.new_context()
    try:
        carol = other.new_page()
        carol.set_default_timeout(20_000)
        sign_in(carol, signin_server, "carol")
        assert carol.get_by_label("Profile").locator("option").all_inner_texts() == ["small: the demo agent"]
        carol.get_by_role("button", name="Sign out").click()
        expect(carol.locator("#login-form")).to_be_visible()
        assert "agentproxy_session" not in {c["name"] for c in other.cookies()}
    finally:
        other.close()
    assert provider.secret not in signin_server.log()
    page.get_by_role("button", name="Delete").first.click()
    page.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    expect(row(page, "signed", "p1")).to_have_count(0, timeout=READY_TIMEOUT)
    assert real_errors(page) == []
