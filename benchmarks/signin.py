"""Sign-in to the first agent's answer in Chromium: the time, and the clicks and key entries a
person makes on the way.

A real OpenID provider (``tests/oidc_provider.py``: zitadel/oidc's example provider, its own login
page) and a real ``agentproxy serve`` in local mode with sign-in on (``tests/unit/live_server.py``:
the real agentapi and the echo demo agent), both on loopback; Debian's Chromium driven by
Playwright. Each run opens the dashboard in a fresh browser context (signed out, no cookies) and
does what a person does: follows "sign in with your identity provider", types the user name and
the password on the provider's page and presses its Login button, and back on the dashboard
types a session name and a first message and presses Create; the run ends when the agent's
answer shows in the conversation. Every click and every key typed is counted (a field is clicked
before it is typed into). Playwright types without a person's pauses, so the times are the
machine's share: pages, redirects, the code exchange, the agent's start and its answer.

Figures per run: open-to-signed-in (the dashboard shows who is signed in), create-to-answer
(from the Create click), and open-to-answer; the medians of ``--runs`` runs (3). Each run's agent
is deleted before the next.

Usage: ``python -m benchmarks.signin [--runs 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.oidc_provider import CLI_CLIENT_ID, CLIENT_ID, SECRET_ENV, USERS, running_provider
from tests.unit.live_server import LiveServer, running_server
from tests.unit.ui.support import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

USER = "alice"
ANSWER_LIMIT_MS = 120_000
"""How long the agent may take to start and answer (a bound, not a measurement)."""
STEP_LIMIT_MS = 30_000
"""How long a page may take to show what a step waits for (a bound, not a measurement)."""
CLEANUP_KEY = "bench-signin-admin-key-0123456789"
"""An admin key of the server, used only to delete each run's agent (never by the browser)."""


class Person:
    """Acts on a page as a person would, counting the clicks and the keys typed."""

    def __init__(self) -> None:
        self.clicks = 0
        self.keys = 0

    def click(self, locator: Any) -> None:
        """One click on ``locator``."""
        locator.click()
        self.clicks += 1

    def type_into(self, locator: Any, text: str) -> None:
        """A click into a field, then ``text`` typed key by key."""
        self.click(locator)
        locator.press_sequentially(text)
        self.keys += len(text)


def one_run(browser: Any, server: LiveServer, index: int) -> dict[str, Any]:
    """Open the dashboard signed out, sign in through the provider, create an agent with a first
    message and wait for its answer; the times (s) and what the person did."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_LIMIT_MS)
    session, text = f"run{index + 1}", "hi"
    try:
        page = context.new_page()
        person = Person()
        started = time.perf_counter()
        page.goto(server.url + "/ui/")
        expect(page.locator("#login-form")).to_be_visible()
        person.click(page.get_by_role("link", name="sign in with your identity provider"))
        person.type_into(page.get_by_label("Username"), USER)
        person.type_into(page.get_by_label("Password"), USERS[USER][0])
        person.click(page.get_by_role("button", name="Login"))
        expect(page.locator("#signed-in-as")).to_have_text(f"signed in as {USER}")
        signed_in = time.perf_counter()
        person.type_into(page.get_by_label("Session"), session)
        person.type_into(page.get_by_label("First message"), text)
        created = time.perf_counter()
        person.click(page.get_by_role("button", name="Create"))
        answer = page.locator("#messages .role-agent .text", has_text=f"echo: {text}")
        expect(answer).to_be_visible(timeout=ANSWER_LIMIT_MS)
        answered = time.perf_counter()
    finally:
        context.close()
    for agent in server.agents():  # the next run starts without this one's agent running
        server.call("DELETE", f"/sessions/{agent['session']}/agents/{agent['id']}?purge=true")
    return {"signed_in_s": signed_in - started, "create_to_answer_s": answered - created,
            "total_s": answered - started, "clicks": person.clicks, "keys": person.keys}


def report(runs: list[dict[str, Any]], load: str) -> None:
    """Print the medians (and the range) of the runs."""
    def line(label: str, name: str) -> str:
        values = [r[name] for r in runs]
        return f"{label:<34}{statistics.median(values):>8.2f}{min(values):>8.2f}{max(values):>8.2f}"

    print(f"sign-in to first agent in Chromium (Debian's, headless, Playwright): zitadel/oidc example provider's "
          f"login page, agentproxy serve in local mode, the echo agent; {os.cpu_count()} CPUs shared by all; "
          f"median of {len(runs)} run(s); load average {load}")
    print()
    print(f"{'':<34}{'p50 s':>8}{'min':>8}{'max':>8}")
    print(line("open to signed in", "signed_in_s"))
    print(line("Create to the agent's answer", "create_to_answer_s"))
    print(line("open to the agent's answer", "total_s"))
    clicks, keys = {r["clicks"] for r in runs}, {r["keys"] for r in runs}
    print()
    print(f"a person's actions: {'/'.join(map(str, sorted(clicks)))} clicks (the sign-in link, user name, password, "
          f"Login, session, first message, Create) and {'/'.join(map(str, sorted(keys)))} keys typed "
          f"(user name, password, session name, message)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs, each in a fresh browser context (default 3)")
    parser.add_argument("--json", help="also write every run's figures to this file")
    args = parser.parse_args()
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        sys.exit(f"Chromium is not installed at {CHROMIUM}: `bin/just browser` installs it")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-signin-") as tmp:
        work = Path(tmp)
        (work / "server").mkdir()
        with running_provider(work) as provider:
            settings = {"server": {"oidc": {"issuer": provider.issuer, "client_id": CLIENT_ID,
                                            "cli_client_id": CLI_CLIENT_ID, "client_secret_env": SECRET_ENV}}}
            with running_server(work / "server", settings=settings, env={SECRET_ENV: provider.secret},
                                api_keys=[("admin", CLEANUP_KEY, True)]) as server, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    runs = [one_run(browser, server, i) for i in range(args.runs)]
                finally:
                    browser.close()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    report(runs, load)


if __name__ == "__main__":
    main()
