"""The prepared home of a Claude Code agent: the pure merge, and the thin I/O around it."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from agentproxy.agenthome import (
    CONFIG_FILE,
    QUIET_ENV,
    SETTINGS_FILE,
    HomeError,
    claude_config,
    claude_environment,
    claude_settings,
    home_dir,
    key_tail,
    prepare_claude_home,
    uses_claude,
)

WORK = "/data/work/a1"
KEY = "sk-ant-api03-" + "x" * 60 + "ABCDEFGHIJ0123456789"


def test_a_fresh_config_has_onboarding_trust_the_key_and_no_updates():
    config = claude_config({}, work_dir=WORK, api_key=KEY)
    assert config == {
        "hasCompletedOnboarding": True,
        "autoUpdates": False,
        "projects": {WORK: {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}},
        "customApiKeyResponses": {"approved": ["ABCDEFGHIJ0123456789"], "rejected": []},
    }


def test_claude_code_records_the_last_20_characters_of_the_trimmed_key():
    assert key_tail(f"  {KEY}\n") == "ABCDEFGHIJ0123456789"
    assert key_tail("sk-test") == "sk-test"


def test_what_is_already_there_is_kept():
    existing: dict[str, Any] = {
        "numStartups": 7, "theme": "light", "userID": "u1",
        "projects": {"/elsewhere": {"hasTrustDialogAccepted": False, "allowedTools": ["Read"]},
                     WORK: {"lastCost": 1.5, "hasTrustDialogAccepted": False}},
        "customApiKeyResponses": {"approved": ["an-older-key-tail-xx"], "rejected": ["ABCDEFGHIJ0123456789", "z"]},
    }
    config = claude_config(existing, work_dir=WORK, api_key=KEY)
    assert config["numStartups"] == 7 and config["theme"] == "light" and config["userID"] == "u1"
    assert config["projects"]["/elsewhere"] == {"hasTrustDialogAccepted": False, "allowedTools": ["Read"]}
    assert config["projects"][WORK] == {"lastCost": 1.5, "hasTrustDialogAccepted": True,
                                        "hasCompletedProjectOnboarding": True}
    # The configured key is approved (a past "no" to it does not stand); other answers stay.
    assert config["customApiKeyResponses"] == {"approved": ["an-older-key-tail-xx", "ABCDEFGHIJ0123456789"],
                                               "rejected": ["z"]}
    assert existing["projects"][WORK]["hasTrustDialogAccepted"] is False  # the input is not changed


def test_without_a_key_no_key_is_approved():
    assert "customApiKeyResponses" not in claude_config({}, work_dir=WORK, api_key=None)
    assert "customApiKeyResponses" not in claude_config({}, work_dir=WORK, api_key="  ")


def test_values_of_the_wrong_shape_are_replaced_not_crashed_on():
    config = claude_config({"projects": [1, 2], "customApiKeyResponses": {"approved": "x", "rejected": [3]}},
                           work_dir=WORK, api_key=KEY)
    assert config["projects"] == {WORK: {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}}
    assert config["customApiKeyResponses"] == {"approved": [key_tail(KEY)], "rejected": []}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=3), max_leaves=8)


@given(existing=st.dictionaries(st.text(max_size=12), _json, max_size=6), key=st.none() | st.text(min_size=1))
def test_the_merge_keeps_every_other_key_and_is_idempotent(existing, key):
    once = claude_config(existing, work_dir=WORK, api_key=key)
    assert claude_config(once, work_dir=WORK, api_key=key) == once
    managed = {"hasCompletedOnboarding", "autoUpdates", "projects", "customApiKeyResponses"}
    assert {k: v for k, v in once.items() if k not in managed} == {k: v for k, v in existing.items()
                                                                    if k not in managed}
    assert once["projects"][WORK]["hasTrustDialogAccepted"] is True
    json.dumps(once)  # still JSON


def test_settings_turn_updates_and_extra_traffic_off_and_set_the_permission_mode():
    assert claude_settings({}, permission_mode=None) == {"env": QUIET_ENV}
    existing = {"env": {"MY_VAR": "1", "DISABLE_AUTOUPDATER": "0"}, "model": "opus",
                "permissions": {"allow": ["Bash(ls:*)"]}}
    settings = claude_settings(existing, permission_mode="dontAsk")
    assert settings == {"env": {"MY_VAR": "1", **QUIET_ENV}, "model": "opus",
                        "permissions": {"allow": ["Bash(ls:*)"], "defaultMode": "dontAsk",
                                        "disableAutoMode": "disable"}}
    # auto mode chosen: it is not disabled.
    assert claude_settings({}, permission_mode="auto")["permissions"] == {"defaultMode": "auto"}


def test_the_environment_holds_the_key_only_when_there_is_one():
    assert claude_environment("/h", base_url=None, api_key=None) == {"HOME": "/h", **QUIET_ENV}
    assert claude_environment("/h", base_url="http://127.0.0.1:1", api_key="k") == {
        "HOME": "/h", **QUIET_ENV, "ANTHROPIC_BASE_URL": "http://127.0.0.1:1", "ANTHROPIC_API_KEY": "k"}


def test_which_commands_run_claude_code():
    assert uses_claude(["claude"]) and uses_claude(("/opt/bin/claude", "--model", "opus"))
    assert not uses_claude(["python3", "-m", "agentproxy.demo_agent"]) and not uses_claude([])
    assert home_dir("/w/a1") == "/w/a1/.agentproxy/home"


def test_preparing_writes_private_files_and_merges_what_is_there(tmp_path: Path):
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / CONFIG_FILE).write_text(json.dumps({"numStartups": 3}))
    (home / SETTINGS_FILE).write_text(json.dumps({"model": "sonnet"}))
    prepare_claude_home(home, work_dir=WORK, api_key=KEY, permission_mode="acceptEdits")
    config = json.loads((home / CONFIG_FILE).read_text())
    assert config["numStartups"] == 3 and config["projects"][WORK]["hasTrustDialogAccepted"] is True
    settings = json.loads((home / SETTINGS_FILE).read_text())
    assert settings["model"] == "sonnet" and settings["permissions"]["defaultMode"] == "acceptEdits"
    for path in (home / CONFIG_FILE, home / SETTINGS_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in home.iterdir()) == [".claude", CONFIG_FILE]  # no temporary files left


def test_a_file_that_is_not_json_is_named_and_left_alone(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / CONFIG_FILE).write_text("{half")
    with pytest.raises(HomeError, match=r"\.claude\.json is not JSON"):
        prepare_claude_home(home, work_dir=WORK, api_key=KEY)
    assert (home / CONFIG_FILE).read_text() == "{half"
    (home / CONFIG_FILE).write_text("[]")
    with pytest.raises(HomeError, match="must hold a JSON object"):
        prepare_claude_home(home, work_dir=WORK, api_key=KEY)


def test_the_command_line_prepares_the_same_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]):
    from agentproxy.cli import main

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("TEAM_KEY", KEY)
    assert main(["prepare-home", "--work-dir", str(work), "--api-key-env", "TEAM_KEY",
                 "--permission-mode", "dontAsk"]) == 0
    out = capsys.readouterr().out
    assert out == home_dir(str(work.resolve())) + "\n" and KEY not in out
    home = Path(out.strip())
    assert json.loads((home / CONFIG_FILE).read_text()) == claude_config({}, work_dir=str(work.resolve()),
                                                                         api_key=KEY)
    assert json.loads((home / SETTINGS_FILE).read_text()) == claude_settings({}, permission_mode="dontAsk")
    (home / CONFIG_FILE).write_text("not json")
    assert main(["prepare-home", "--work-dir", str(work)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentproxy: error: ") and "is not JSON" in err and err.count("\n") == 1
