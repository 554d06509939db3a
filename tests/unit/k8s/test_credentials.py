"""Where the k8s backend's credentials come from: a kubeconfig first, else the
ServiceAccount Kubernetes mounts into a pod, whose rotating token is read again."""

from __future__ import annotations

from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.credentials import TokenFile, kubeconfig_present, service_account_dir


def _mount(tmp_path, token="t1"):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token + "\n")
    return sa


def test_a_kubeconfig_file_wins_and_the_mount_counts_only_in_a_pod(tmp_path, monkeypatch):
    sa = _mount(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert not kubeconfig_present() and service_account_dir(directory=str(sa)) is None  # not in a pod
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "198.18.1.1")
    assert service_account_dir(directory=str(sa)) == sa
    assert service_account_dir(directory=str(tmp_path / "none")) is None
    assert service_account_dir("explicit.kubeconfig", directory=str(sa)) is None
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{tmp_path / 'kubeconfig'}")
    assert service_account_dir(directory=str(sa)) == sa  # named files that do not exist do not count
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\n")
    assert kubeconfig_present() and service_account_dir(directory=str(sa)) is None
    monkeypatch.delenv("KUBECONFIG")
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert kubeconfig_present()


def test_the_token_is_read_again_after_the_period_or_when_asked(tmp_path):
    sa = _mount(tmp_path)
    now = [100.0]  # the file is real; only the clock is driven by the test
    token = TokenFile(sa / "token", period=60, clock=lambda: now[0])
    assert token.header() == {"Authorization": "Bearer t1"}
    (sa / "token").write_text("t2")
    now[0] += 59
    assert token.header() == {"Authorization": "Bearer t1"}
    now[0] += 1
    assert token.header() == {"Authorization": "Bearer t2"}
    (sa / "token").write_text("t3")
    assert token.reload() is True and token.header() == {"Authorization": "Bearer t3"}
    assert token.reload() is False


def test_a_token_file_that_cannot_be_read_keeps_the_token_and_is_tried_again_later(tmp_path, caplog):
    sa = _mount(tmp_path)
    now = [0.0]
    token = TokenFile(sa / "token", period=60, clock=lambda: now[0])
    (sa / "token").unlink()
    now[0] = 61
    assert token.header() == {"Authorization": "Bearer t1"}
    assert "cannot read the ServiceAccount token" in caplog.text
    caplog.clear()
    assert token.header() == {"Authorization": "Bearer t1"} and not caplog.text  # not on every request
    (sa / "token").write_text("t2")
    now[0] = 122
    assert token.header() == {"Authorization": "Bearer t2"}


def test_a_request_refused_with_an_old_token_is_repeated_when_another_read_the_new_one(tmp_path):
    sa = _mount(tmp_path)
    token = TokenFile(sa / "token", period=3600)
    client = Client(None, token=token)  # type: ignore[arg-type]  # no API server: only the choice after a 401 is tested
    sent = token.header()
    (sa / "token").write_text("t2")
    assert client._renewed(401, sent)
    # Two requests were under way with t1; the first 401 read t2, the second must repeat too.
    assert client._renewed(401, sent)
    assert not client._renewed(401, token.header())  # refused with the newest token: no repeat
    assert not client._renewed(403, sent)
