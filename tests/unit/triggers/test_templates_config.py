"""Templates in the sandbox, refused at load when they reach Python internals; the ``triggers``
settings' rules, each error naming the setting."""

from __future__ import annotations

import pytest

from agentproxy.settings.errors import SettingsError
from agentproxy.settings.load import load_settings
from agentproxy.triggers.config import SecretMissing, SecretRef, TriggersError, parse_triggers, secret_of
from agentproxy.triggers.templates import Condition, OutputTooLarge, Prompt, TemplateRefused

from .support import hook


class Section:
    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.mark.parametrize("source", [
    "{{ issue.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__ }}",
    "{{ issue['__class__'] }}",
    "{{ issue|attr('__class__') }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ (lambda).func_globals }}" if False else "{{ x.gi_frame }}",
    "{{ x.mro() }}",
    "{% set k = '__cla' ~ 'ss__' %}{{ issue[k] }}",
])
def test_a_template_reaching_python_internals_is_refused_at_load_naming_the_hook(source: str) -> None:
    with pytest.raises(TriggersError) as caught:
        parse_triggers(Section(hooks={"gh": hook(prompt=source)}))
    assert caught.value.path == "triggers.hooks.gh.prompt"
    assert "reaches Python internals" in caught.value.rule or "does not compile" in caught.value.rule


def test_the_sandbox_still_refuses_what_is_built_at_render_time() -> None:
    # A name assembled from parts no load-time check can see: the sandbox refuses it when rendered.
    prompt = Prompt("{% set k = 'cla' %}{{ (issue|attr('_' ~ '_' ~ k ~ 'ss_' ~ '_')) }}")
    with pytest.raises(TemplateRefused):
        prompt.render({"issue": {"title": "x"}})


def test_settings_loading_names_the_hook_of_a_refused_template(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("triggers:\n  hooks:\n    gh:\n      secret_env: S\n      prompt: '{{ x.__class__ }}'\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(config, environ={})
    assert "triggers.hooks.gh.prompt" in str(caught.value) and "Python internals" in str(caught.value)


def test_output_is_bounded() -> None:
    with pytest.raises(OutputTooLarge):
        Prompt("{% for i in range(1000) %}{{ title }}{% endfor %}", limit=1000).render({"title": "0123456789"})
    with pytest.raises(TemplateRefused):
        Prompt("{{ 'x' * 1000000000 }}").render({})
    with pytest.raises(TemplateRefused):
        Prompt("{{ 10 ** 100000 }}").render({})
    assert Prompt("{{ title }} #{{ n }}").render({"title": "Bug", "n": 3}) == "Bug #3"
    # Fields an event lacks, at any depth, are empty (one hook gets events of several shapes).
    assert Prompt("[{{ comment.user.login }}]{% if comment %}x{% endif %}").render({"issue": {}}) == "[]"


def test_conditions() -> None:
    assert Condition("issue.number == 1 and 'bug' in labels").holds({"issue": {"number": 1}, "labels": ["bug"]})
    assert not Condition("issue.number > 5").holds({"issue": {}})  # missing: false, not an error
    with pytest.raises(TemplateRefused):
        Condition("issue.__class__")
    with pytest.raises(TemplateRefused):
        Condition("issue.number ==")


@pytest.mark.parametrize(("fields", "path", "rule"), [
    ({"secret_env": None}, "triggers.hooks.gh.secret_env", "a secret is required"),
    ({"secret_env": "bad-name"}, "triggers.hooks.gh.secret_env", "environment variable"),
    ({"scheme": "sha1"}, "triggers.hooks.gh.scheme", "github, hmac-sha256"),
    ({"reuse": "always"}, "triggers.hooks.gh.reuse", "none, issue"),
    ({"max_running": -1}, "triggers.hooks.gh.max_running", "0 (no limit)"),
    ({"agent": "nope"}, "triggers.hooks.gh.agent", "configured agent types"),
    ({"session": "no spaces"}, "triggers.hooks.gh.session", "characters"),
    ({"secret": "x"}, "triggers.hooks.gh.secret", "is not a hook field"),
    ({"match": {"when": "a.__globals__"}}, "triggers.hooks.gh.match.when", "Python internals"),
    ({"match": {"label": ["bug"]}}, "triggers.hooks.gh.match.label", "is not a match field"),
])
def test_hook_settings_errors_name_the_setting(fields, path, rule) -> None:
    with pytest.raises(TriggersError) as caught:
        parse_triggers(Section(hooks={"gh": hook(**fields)}), agent_types={"echo": []})
    assert caught.value.path == path and rule in caught.value.rule


def test_a_hook_cannot_take_the_id_of_the_proxys_own_hooks_route() -> None:
    # POST /hooks/waiting is where Claude pods report waiting_input; a hook of that id would
    # never be reached.
    with pytest.raises(TriggersError) as caught:
        parse_triggers(Section(hooks={"waiting": hook()}), agent_types={"echo": []})
    assert caught.value.path == "triggers.hooks.waiting" and "reserved" in caught.value.rule


def test_schedule_and_subscription_errors() -> None:
    run = {"prompt": "p", "owner": "alice"}
    cases = [
        (Section(schedules={"n": {**run, "cron": "61 * * * *"}}), "triggers.schedules.n.cron"),
        (Section(schedules={"n": {**run, "cron": "0 3 * * *", "timezone": "Mars/Base"}}),
         "triggers.schedules.n.timezone"),
        (Section(schedules={"n": {**run, "cron": "0 3 * * *", "overlap": "queue"}}), "triggers.schedules.n.overlap"),
        (Section(notifications=[{"url": "ftp://x", "format": "slack"}]), "triggers.notifications.0.url"),
        (Section(notifications=[{"url": "http://x", "format": "signed"}]), "triggers.notifications.0.secret_env"),
        (Section(notifications=[{"url": "http://x", "format": "slack", "events": ["done"]}]),
         "triggers.notifications.0.events"),
        (Section(notifications=[{"url": "http://x", "format": "slack", "hook": "nope"}]),
         "triggers.notifications.0.hook"),
        (Section(delivery={"attempts": 0}), "triggers.delivery.attempts"),
    ]
    for section, path in cases:
        with pytest.raises(TriggersError) as caught:
            parse_triggers(section)
        assert caught.value.path == path, (path, caught.value)


def test_secrets_are_read_by_reference_and_never_shown(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cr3t-value")
    parsed = parse_triggers(Section(hooks={"gh": hook(secret_env="HOOK_SECRET")}))
    assert secret_of(parsed.hooks["gh"].secret) == b"s3cr3t-value"
    assert "s3cr3t-value" not in repr(parsed) and parsed.hooks["gh"].summary()["secret"] == "env:HOOK_SECRET"
    path = tmp_path / "secret"
    path.write_text("from-a-file\n")
    assert secret_of(SecretRef(file=str(path))) == b"from-a-file"
    monkeypatch.delenv("HOOK_SECRET")
    with pytest.raises(SecretMissing):
        secret_of(parsed.hooks["gh"].secret)


def test_the_openapi_document_has_the_trigger_routes_when_triggers_are_on(settings) -> None:
    from agentproxy.api.openapi import openapi_document
    from agentproxy.settings.schema import TriggersSettings
    from tests.unit.api.support import documented_operations, served_operations

    settings.triggers = TriggersSettings(hooks={"gh": hook()})
    from agentproxy.triggers.routes import openapi_paths
    assert served_operations(settings) == documented_operations(openapi_document(extra_paths=openapi_paths()))
