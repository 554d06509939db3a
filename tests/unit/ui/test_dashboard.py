"""The web dashboard in a real browser (Debian's Chromium through Playwright) against a real
local-mode server with the real agentapi and the echo demo agent: a person's steps, each
ending in a screenshot under ``test-artifacts/dashboard/``."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from .support import ADMIN_KEY, READY_TIMEOUT, real_errors, row

pytestmark = pytest.mark.slow

REPLY_TIMEOUT = 60_000


def create_in_form(page, session: str, agent: str, env: str = "") -> None:
    page.get_by_label("Session").fill(session)
    page.get_by_label("Agent id").fill(agent)
    if env:
        page.get_by_label("Environment").fill(env)
    page.get_by_role("button", name="Create").click()


def chat_and_see_echo(page, text: str) -> None:
    """Type a message once the agent can take it and wait for the streamed echo."""
    box = page.get_by_label("Message", exact=True)
    expect(box).to_be_enabled(timeout=READY_TIMEOUT)
    box.fill(text)
    box.press("Enter")
    reply = page.locator("#messages .role-agent .text", has_text=f"echo: {text}")
    expect(reply).to_have_text(f"echo: {text}", timeout=REPLY_TIMEOUT)
    expect(page.locator("#messages .role-user .text").last).to_have_text(text)


def delete_in_dialog(page, shot, name: str, purge: bool = True) -> None:
    page.get_by_role("button", name="Delete").first.click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    if purge:
        dialog.get_by_label("Also delete its data").check()
    shot(name)
    dialog.get_by_role("button", name="Delete").click()
    expect(dialog).to_be_hidden()


def test_create_watch_ready_chat_logs_delete(server, page, shot):
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/ui/")
    expect(page.locator("#connection")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    shot("01-empty")

    create_in_form(page, "web", "w1", env="GREETING=hello")
    expect(row(page, "web", "w1")).to_be_visible()
    expect(row(page, "web", "w1").locator(".badge")).to_have_text("ready", timeout=READY_TIMEOUT)
    expect(page.locator("#agent-status")).to_have_text("ready")
    shot("02-ready")

    chat_and_see_echo(page, "hello from the dashboard")
    expect(page.locator("#chat-status")).to_have_text("The agent is waiting for a message.", timeout=REPLY_TIMEOUT)
    shot("03-reply-streamed")

    page.get_by_role("tab", name="Logs").click()
    expect(page.locator("#logs-text")).to_contain_text("Starting server on port")
    shot("04-logs")
    page.get_by_role("tab", name="Chat").click()

    # An agent created elsewhere shows up by itself; one deleted elsewhere goes away.
    server.call("POST", "/sessions/elsewhere/agents", {"id": "e1"})
    expect(row(page, "elsewhere", "e1")).to_be_visible()
    expect(row(page, "elsewhere", "e1").locator(".badge")).to_have_text("ready", timeout=READY_TIMEOUT)
    server.call("DELETE", "/sessions/elsewhere/agents/e1")
    expect(row(page, "elsewhere", "e1")).to_have_count(0, timeout=READY_TIMEOUT)

    delete_in_dialog(page, shot, "05-delete-confirmation")
    expect(row(page, "web", "w1")).to_have_count(0, timeout=READY_TIMEOUT)
    expect(page.locator("#nothing-selected")).to_be_visible()
    shot("06-deleted")
    assert not [a for a in server.agents() if a["session"] in ("web", "elsewhere")]
    assert page.evaluate("window.__sameDocument") is True
    assert real_errors(page) == []


def test_suspend_and_resume_keep_the_chat(server, page, shot):
    server.call("POST", "/sessions/nap/agents", {"id": "n1"})
    page.goto(server.url + "/ui/")
    row(page, "nap", "n1").click()
    expect(page.locator("#agent-status")).to_have_text("ready", timeout=READY_TIMEOUT)
    chat_and_see_echo(page, "before the nap")

    page.get_by_role("button", name="Suspend").click()
    expect(page.locator("#agent-status")).to_have_text("suspended", timeout=READY_TIMEOUT)
    expect(row(page, "nap", "n1").locator(".badge")).to_have_text("suspended")
    expect(page.locator("#agent-reason")).to_contain_text("Suspended: suspended through the API")
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    shot("11-suspended")

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#agent-status")).to_have_text("ready", timeout=READY_TIMEOUT)
    expect(page.get_by_role("button", name="Suspend")).to_be_visible()
    # The conversation is back in the chat once the agent has loaded it.
    earlier = page.locator("#messages .role-agent .text", has_text="echo: before the nap")
    expect(earlier).to_have_text("echo: before the nap", timeout=REPLY_TIMEOUT)
    chat_and_see_echo(page, "after the nap")
    shot("12-resumed")
    server.call("DELETE", "/sessions/nap/agents/n1")
    assert real_errors(page) == []


def test_a_create_answered_after_the_agent_is_ready_still_shows_it_ready(server, page, shot):
    # The create's answer ("starting") is held back until the event stream has shown the agent
    # ready: an imitation of a slow network, which a real one gives only now and then (a loaded
    # machine did). The older answer must not take the newer state's place.
    page.goto(server.url + "/ui/")
    expect(page.locator("#connection")).to_have_text("live")
    held = []

    def hold(route):  # the request goes to the server; its answer waits
        held.append((route, route.fetch()))
    page.route(re.compile(r".*/sessions/late/agents$"), hold)
    create_in_form(page, "late", "l1")
    expect(row(page, "late", "l1").locator(".badge")).to_have_text("ready", timeout=READY_TIMEOUT)
    [(route, answer)] = held
    # The server answers with the agent as it was then: "starting", or already "ready" when the
    # echo agent was quicker than the answer (it happens on a fast machine). Either way, the
    # answer delivered says "starting", as the older state an answer can hold.
    body = answer.json()
    assert body["status"] in ("starting", "ready")
    route.fulfill(response=answer, json={**body, "status": "starting"})
    expect(page.get_by_label("Agent id")).to_have_value("")  # the answer was taken
    expect(row(page, "late", "l1").locator(".badge")).to_have_text("ready")
    shot("13-late-answer")
    server.call("DELETE", "/sessions/late/agents/l1")
    assert real_errors(page) == []


def test_html_from_the_agent_is_shown_as_text(server, page, shot):
    server.call("POST", "/sessions/xss/agents", {"id": "x1"})
    server.wait_for(lambda agents: any(a["id"] == "x1" and a["status"] == "ready" for a in agents), what="x1 ready")
    response = page.goto(server.url + "/ui/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    row(page, "xss", "x1").click()
    # Short enough for one line of the agent's 80-column terminal (longer lines wrap).
    payload = "<img src=x onerror=__pwned=1><script>__pwned=2</script><b>b</b>"
    chat_and_see_echo(page, payload)
    messages = page.locator("#messages")
    expect(messages.locator("img")).to_have_count(0)
    expect(messages.locator("script")).to_have_count(0)
    expect(messages.locator("b")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None
    shot("07-html-shown-as-text")
    server.call("DELETE", "/sessions/xss/agents/x1")
    assert real_errors(page) == []


def test_with_api_keys(keyed_server, page, shot):
    sent_without_key = []

    def check_key(request) -> None:
        path = request.url[len(keyed_server.url):]
        if not path.startswith("/ui") and request.headers.get("authorization") != f"Bearer {ADMIN_KEY}":
            sent_without_key.append(path)

    page.goto(keyed_server.url + "/ui/")
    login = page.locator("#login-form")
    expect(login).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    shot("08-key-asked")

    page.get_by_label("Key").fill("not-the-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_have_text("The API key is not valid.")
    page.on("request", check_key)
    page.get_by_label("Key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#connection")).to_have_text("live")

    create_in_form(page, "keyed", "k1")
    expect(row(page, "keyed", "k1").locator(".badge")).to_have_text("ready", timeout=READY_TIMEOUT)
    chat_and_see_echo(page, "hello with a key")
    shot("09-keys-reply-streamed")
    delete_in_dialog(page, shot, "10-keys-delete-confirmation", purge=False)
    expect(row(page, "keyed", "k1")).to_have_count(0, timeout=READY_TIMEOUT)
    assert not keyed_server.agents()

    # Every request after signing in carried the key, in a header; nothing of it is in the
    # address or in storage that outlives the tab.
    assert sent_without_key == []
    assert ADMIN_KEY not in page.url
    assert page.evaluate("JSON.stringify(localStorage)") == "{}"
    assert page.evaluate("document.cookie") == ""
    # Without a key the API stays closed; the page itself is open.
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(keyed_server.url + "/agents", timeout=10)
    assert info.value.code == 401
    assert re.search(r"agentproxy", urllib.request.urlopen(keyed_server.url + "/ui/", timeout=10).read().decode())
    assert real_errors(page) == []
