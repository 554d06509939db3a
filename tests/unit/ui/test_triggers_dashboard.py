"""The dashboard's triggers view (Debian's Chromium through Playwright, a real local-mode server
with a hook, a schedule and a notification subscription in its settings, the real agentapi):

- an admin sees the hook (what it matches, whose agents it makes, where its secret is, never the
  secret), the schedule (cron, time zone, next tick), a signed delivery's outcome and the agent it
  made as they happen (the view reads them again every few seconds), and the notification that
  could not be delivered as a dead letter;
- strings from the settings and from deliveries are shown as text: a match rule holding
  ``<script>`` and an ``<img onerror>`` runs nothing and makes no element;
- a key without admin does not see the view (and the routes answer it 403).

The notification goes to a port of 127.0.0.1 where nothing listens: a refused connection is the
real failure a receiver that is down gives."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from testenv.ports import free_port

from ..live_server import LiveServer, running_server
from .support import ADMIN_KEY, READY_TIMEOUT, real_errors

pytestmark = pytest.mark.slow

USER_KEY = "ui-user-key-0123456789"
SECRET = "ui-hook-secret-0123456789"
HOSTILE_LABEL = "<script>window.pwned=1</script>"
HOSTILE_WHEN = "'<img src=x onerror=window.pwned=2>' not in issue.title"


@pytest.fixture(scope="module")
def trigger_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    nowhere = f"http://127.0.0.1:{free_port()}/notify"  # nothing listens there
    triggers = {
        "hooks": {"gh": {"scheme": "github", "secret_env": "UI_HOOK_SECRET", "owner": "alice", "agent": "echo",
                         "session": "gh-ui", "match": {"events": ["issues"], "labels": [HOSTILE_LABEL],
                                                       "when": HOSTILE_WHEN},
                         "prompt": "Fix <script>window.pwned=3</script>{{ issue.title }}"}},
        "schedules": {"nightly": {"cron": "0 3 * * 1-5", "timezone": "Europe/Berlin", "owner": "alice",
                                  "agent": "echo", "prompt": "Nightly run of {{ tick }}"},
                      "minutely": {"cron": "* * * * *", "owner": "alice", "agent": "echo",
                                   "prompt": "Run of {{ tick }}"}},
        "notifications": [{"name": "nowhere", "url": nowhere, "format": "signed", "secret_env": "UI_HOOK_SECRET",
                           "events": ["deleted"], "hook": "gh"}],
        "delivery": {"attempts": 1, "timeout": "2s", "debounce": "0s"},
    }
    with running_server(tmp_path_factory.mktemp("serve-ui-triggers"),
                        api_keys=[("admin", ADMIN_KEY, True), ("bob", USER_KEY, False)],
                        settings={"triggers": triggers}, env={"UI_HOOK_SECRET": SECRET}) as live:
        yield live


def deliver(server: LiveServer, title: str) -> tuple[int, dict]:
    """Post a signed ``issues`` delivery as GitHub would; its status and JSON answer."""
    body = json.dumps({"action": "opened", "issue": {"number": 7, "title": title, "labels": [{"name": HOSTILE_LABEL}]},
                       "repository": {"full_name": "acme/api"}, "sender": {"login": "carol"}}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(server.url + "/hooks/gh", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status, json.loads(answer.read())


def sign_in(page, server: LiveServer, key: str) -> None:
    page.goto(server.url + "/ui/")
    page.get_by_label("Key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_text("live")


def test_an_admin_sees_hooks_schedules_and_deliveries_as_they_happen(trigger_server, page, shot):
    sign_in(page, trigger_server, ADMIN_KEY)
    page.get_by_role("button", name="Triggers").click()
    view = page.locator("#triggers-view")
    expect(view).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()

    hook = page.locator("#triggers-hooks tr[data-hook='gh']")
    expect(hook).to_contain_text("env:UI_HOOK_SECRET")
    expect(hook).to_contain_text("owner alice")
    expect(hook).to_contain_text(f"labels: {HOSTILE_LABEL}")  # as text
    expect(hook).to_contain_text(f"when: {HOSTILE_WHEN}")
    schedule = page.locator("#triggers-schedules tr[data-schedule='nightly']")
    expect(schedule).to_contain_text("0 3 * * 1-5")
    expect(schedule).to_contain_text("Europe/Berlin")
    listed = trigger_server.call("GET", "/schedules")["schedules"]
    next_tick = next(s for s in listed if s["id"] == "nightly")["next_tick"]
    expect(schedule.locator(f"time[datetime='{next_tick}']")).to_have_count(1)
    expect(page.locator("#triggers-deliveries tr[data-kind='hook']")).to_have_count(0)

    # A signed delivery while the page is open: its outcome and agent appear without a reload.
    status, agent = deliver(trigger_server, "The build is red")
    assert status == 202 and agent["result"] == "created", agent
    delivery = page.locator("#triggers-deliveries tr[data-kind='hook']")
    expect(delivery).to_have_count(1)
    expect(delivery.locator(".outcome")).to_have_text("202")
    expect(delivery).to_contain_text(agent["id"])
    expect(delivery).to_contain_text("created")
    # One the hook does not match (its rule, holding markup, is false for this title).
    status, answer = deliver(trigger_server, "<img src=x onerror=window.pwned=2>")
    assert status == 200 and answer["matched"] is False, answer
    expect(page.locator("#triggers-deliveries tr[data-kind='hook']")).to_have_count(2)
    expect(page.locator("#triggers-deliveries tr[data-kind='hook']").first).to_contain_text("not matched")
    shot("30-triggers")

    # The agent's delete is news for a receiver that is down: a dead letter, with its error.
    trigger_server.wait_for(lambda agents: any(a["id"] == agent["id"] and a["status"] == "ready" for a in agents),
                            timeout=READY_TIMEOUT / 1000, what="the hook's agent ready")
    trigger_server.call("DELETE", f"/sessions/{agent['session']}/agents/{agent['id']}?purge=true")
    letter = page.locator("#triggers-dead tr")
    expect(letter.nth(1)).to_contain_text("deleted", timeout=30_000)  # row 0 is the header
    expect(letter.nth(1)).to_contain_text("nowhere")
    expect(letter.nth(1)).to_contain_text("ClientConnectorError")
    notification = page.locator("#triggers-deliveries tr[data-kind='notification']")
    expect(notification.locator(".outcome")).to_have_text("dead")
    shot("31-triggers-dead-letter")

    # Nothing of the settings' or deliveries' markup became an element or ran.
    assert view.locator("script, img").count() == 0
    assert page.evaluate("window.pwned") is None
    assert SECRET not in page.content()
    page.get_by_role("button", name="Agents").click()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(view).to_be_hidden()
    assert real_errors(page) == []


def test_a_schedule_tick_shows_its_agent_and_the_replica_that_fired_it(trigger_server, page):
    sign_in(page, trigger_server, ADMIN_KEY)
    page.get_by_role("button", name="Triggers").click()
    schedule = page.locator("#triggers-schedules tr[data-schedule='minutely']")
    expect(schedule).to_contain_text("* * * * *")
    # The next minute's tick (a minute at most, and the proxy's look at it): the run, its agent and
    # who fired it appear without a reload.
    tick = page.locator("#triggers-deliveries tr[data-kind='schedule']").first
    expect(tick.locator(".outcome")).to_have_text("created", timeout=90_000)
    listed = trigger_server.call("GET", "/schedules")["schedules"]
    claim = next(s for s in listed if s["id"] == "minutely")["claim"]
    assert claim and claim["by"], listed
    expect(schedule).to_contain_text(claim["by"])
    expect(tick).to_contain_text("minutely-")  # the agent's id is the tick's
    assert real_errors(page) == []


def test_a_key_without_admin_does_not_see_the_triggers(trigger_server, page):
    for path in ("/hooks", "/schedules", "/triggers/deliveries", "/triggers/dead-letters"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            trigger_server.call("GET", path, key=USER_KEY)
        assert refused.value.code == 403, path
    with page.expect_response(lambda response: response.url.endswith("/hooks")) as asked:
        sign_in(page, trigger_server, USER_KEY)
    assert asked.value.status == 403  # the page asked, and offers no triggers view
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#views")).to_be_hidden()
    expect(page.get_by_role("button", name="Triggers")).to_have_count(0)
    expect(page.locator("#triggers-view")).to_be_hidden()
    assert real_errors(page) == []
