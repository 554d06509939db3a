"""Operator templates (settings.templates_dir): file-by-file overrides of the
defaults, and clear errors for broken or misnamed templates.

Compiled templates are cached per directory, so every test uses its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentproxy.backends.k8s import model, plan
from agentproxy.render import SHARED, TEMPLATES, RenderError, default_templates_dir, render_agent

from .._support import by_kind, settings_with, spec_for


def _custom(tmp_path: Path, name: str, edit) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir(exist_ok=True)
    original = (default_templates_dir() / name).read_text()
    edited = edit(original)
    assert edited != original
    (directory / name).write_text(edited)
    return directory


def _render(directory: Path):
    settings = settings_with(f"templates_dir={directory}")
    return render_agent(settings, spec_for(settings))


def test_default_templates_dir_holds_every_template():
    directory = default_templates_dir()
    assert directory.is_dir()
    for filename in [*SHARED, *(filename for filename, _, _ in TEMPLATES)]:
        assert (directory / filename).is_file(), filename


def test_one_template_overridden_others_default(tmp_path, settings):
    directory = _custom(tmp_path, "service.yaml.j2", lambda t: t.replace(
        "  publishNotReadyAddresses: true\n", "  publishNotReadyAddresses: false\n"))
    custom = by_kind(_render(directory))
    default = by_kind(render_agent(settings, spec_for(settings)))
    assert custom["Service"]["spec"]["publishNotReadyAddresses"] is False
    assert default["Service"]["spec"]["publishNotReadyAddresses"] is True
    for kind in ("ConfigMap", "PersistentVolumeClaim", "StatefulSet"):
        assert custom[kind] == default[kind], kind


def test_custom_template_may_add_fields(tmp_path):
    directory = _custom(tmp_path, "pvc.yaml.j2", lambda t: t.replace(
        "spec:\n", "  annotations:\n    team: {{ agent.session | q }}\nspec:\n"))
    pvc = by_kind(_render(directory))["PersistentVolumeClaim"]
    assert pvc["metadata"]["annotations"] == {"team": "s1"}


def test_missing_variable_names_template_and_variable(tmp_path):
    directory = _custom(tmp_path, "configmap.yaml.j2", lambda t: t + "  EXTRA: {{ no_such_value | q }}\n")
    with pytest.raises(RenderError) as info:
        _render(directory)
    message = str(info.value)
    assert "configmap.yaml.j2" in message
    assert "no_such_value" in message and "undefined" in message


def test_missing_attribute_is_an_error_not_an_empty_string(tmp_path):
    directory = _custom(tmp_path, "configmap.yaml.j2", lambda t: t + "  EXTRA: {{ agent.no_such_field }}\n")
    with pytest.raises(RenderError) as info:
        _render(directory)
    assert "configmap.yaml.j2" in str(info.value) and "no_such_field" in str(info.value)


def test_renamed_object_is_refused(tmp_path):
    directory = _custom(tmp_path, "statefulset.yaml.j2", lambda t: t.replace(
        "  name: {{ names.statefulset | q }}\n", "  name: my-agent\n", 1))
    with pytest.raises(RenderError) as info:
        _render(directory)
    message = str(info.value)
    assert "statefulset.yaml.j2" in message and "agent-a1" in message and "my-agent" in message


def test_moved_namespace_is_refused(tmp_path):
    directory = _custom(tmp_path, "pvc.yaml.j2", lambda t: t.replace(
        "  namespace: {{ k8s.namespace | q }}\n", "  namespace: elsewhere\n"))
    with pytest.raises(RenderError, match="pvc.yaml.j2 must render PersistentVolumeClaim"):
        _render(directory)


def test_dropped_managed_by_label_is_refused(tmp_path):
    directory = _custom(tmp_path, "service.yaml.j2", lambda t: t.replace(
        "{%- for key, value in labels.items() %}\n    {{ key | q }}: {{ value | q }}\n{%- endfor %}",
        "    team: a", 1))
    with pytest.raises(RenderError, match="app.kubernetes.io/managed-by=agentproxy"):
        _render(directory)


def test_template_syntax_error(tmp_path):
    directory = _custom(tmp_path, "pvc.yaml.j2", lambda t: t + "{% if %}\n")
    with pytest.raises(RenderError, match=r"pvc\.yaml\.j2 line \d+"):
        _render(directory)


def test_template_rendering_invalid_yaml(tmp_path):
    directory = _custom(tmp_path, "pvc.yaml.j2", lambda t: t + "  broken: [\n")
    with pytest.raises(RenderError, match="pvc.yaml.j2 rendered invalid YAML"):
        _render(directory)


def test_template_rendering_a_list(tmp_path):
    directory = _custom(tmp_path, "pvc.yaml.j2", lambda t: "- a\n- b\n")
    with pytest.raises(RenderError, match="pvc.yaml.j2 must render one YAML mapping"):
        _render(directory)


def test_non_existent_templates_dir(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(RenderError) as info:
        _render(missing)
    assert str(missing) in str(info.value) and "is not a directory" in str(info.value)
    assert info.value.field == "templates_dir"


def test_templates_dir_that_is_a_file(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text("")
    with pytest.raises(RenderError, match="is not a directory"):
        _render(path)


def test_empty_templates_dir_uses_the_defaults(tmp_path, settings):
    directory = tmp_path / "empty"
    directory.mkdir()
    assert _render(directory) == render_agent(settings, spec_for(settings))


def test_the_pvc_and_the_claim_template_share_one_spec(tmp_path):
    # One file changes both: a create still leaves the PVC to the StatefulSet controller.
    directory = _custom(tmp_path, "pvc-spec.j2", lambda t: t.replace(
        'accessModes: ["ReadWriteOnce"]', 'accessModes: ["ReadWriteOnce"]\nvolumeMode: Block'))
    objects = _render(directory)
    custom = by_kind(objects)
    assert custom["PersistentVolumeClaim"]["spec"]["volumeMode"] == "Block"
    assert custom["StatefulSet"]["spec"]["volumeClaimTemplates"][0]["spec"] == custom["PersistentVolumeClaim"]["spec"]
    nothing = model.AgentObjects(None, None, None, None)
    assert "PersistentVolumeClaim" not in plan.plan(objects, nothing, plan.Purpose.CREATE).kinds


def test_templates_written_before_the_shared_spec_still_render(tmp_path, settings):
    # An operator's StatefulSet template with the claim template's spec written out, as the
    # shipped one had it, renders what the shipped templates render.
    def inline(template: str) -> str:
        template = template.replace('{%- import "pvc-spec.j2" as volume -%}\n', "")
        return template.replace("        {{ volume.pvc_spec(k8s, resources) | indent(8) }}\n", (
            '        accessModes: ["ReadWriteOnce"]\n'
            "{%- if k8s.storage_class is not none %}\n"
            "        storageClassName: {{ k8s.storage_class | q }}\n"
            "{%- endif %}\n"
            "        resources:\n"
            "          requests:\n"
            "            storage: {{ resources.storage_size | q }}\n"))
    directory = _custom(tmp_path, "statefulset.yaml.j2", inline)
    assert "pvc_spec" not in (directory / "statefulset.yaml.j2").read_text()
    assert _render(directory) == render_agent(settings, spec_for(settings))


def test_a_broken_shared_template_is_named(tmp_path):
    directory = _custom(tmp_path, "pvc-spec.j2", lambda t: t.replace("{%- endmacro %}", ""))
    with pytest.raises(RenderError, match=r"pvc-spec\.j2 line \d+"):
        _render(directory)
