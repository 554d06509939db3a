"""The pure part of sign-in: the ``server.oidc`` settings, who a token's claims name, PKCE."""

from __future__ import annotations

import pytest

from agentproxy.teams.oidc import SignInRequest, TokenRefused, identity_of, looks_like_jwt, oidc_config, safe_next

from .._support import settings_error, settings_with


def config(*more: str):
    return oidc_config(settings_with("server.oidc.issuer=https://login.example.com/", "server.oidc.client_id=web",
                                     *more))


def test_sign_in_is_off_without_an_issuer_and_audiences_default_to_both_clients():
    assert oidc_config(settings_with()) is None
    assert config().audiences == ("web",)
    both = config("server.oidc.cli_client_id=cli")
    assert both.audiences == ("web", "cli") and both.cli_client_id == "cli"
    assert config("server.oidc.audiences=a, b").audiences == ("a", "b")
    assert config().discovery_url == "https://login.example.com/.well-known/openid-configuration"


@pytest.mark.parametrize("override, path, words", [
    (("server.oidc.issuer=https://x",), "server.oidc.client_id", "client"),
    (("server.oidc.issuer=login.example.com", "server.oidc.client_id=w"), "server.oidc.issuer", "http"),
    (("server.oidc.client_secret_env=not a name",), "server.oidc.client_secret_env", "environment variable"),
    (("server.oidc.scopes=profile email",), "server.oidc.scopes", "openid"),
])
def test_bad_oidc_settings_name_the_setting_and_the_rule(override, path, words):
    error = settings_error(*override)
    assert error.key == path and words in str(error)


def test_the_secret_itself_is_no_setting():
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: the schema has no such field
        settings_with("server.oidc.client_secret=abc")


def test_identity_of_claims():
    c = config()
    who = identity_of({"preferred_username": "alice", "groups": ["ml", "/org/x", 3], "exp": 10, "sub": "1"}, c)
    assert (who.user, who.groups, who.expires) == ("alice", frozenset({"ml"}), 10.0)
    assert identity_of({"preferred_username": "bob", "groups": "ml", "sub": "2"}, c).groups == {"ml"}
    with pytest.raises(TokenRefused, match="preferred_username"):
        identity_of({"sub": "1"}, c)
    with pytest.raises(TokenRefused, match="must be"):
        identity_of({"preferred_username": "a b", "sub": "1"}, c)
    mail = config("server.oidc.username_claim=email", "server.oidc.groups_claim=roles")
    assert identity_of({"email": "a@example.com", "roles": ["x"], "sub": "1"}, mail).groups == {"x"}


def test_pkce_challenge_is_rfc_7636s_s256():
    # RFC 7636, appendix B.
    attempt = SignInRequest("s", "n", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert attempt.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    url = attempt.url("https://idp/auth", "web", "http://127.0.0.1:8080/auth/callback", ("openid",))
    assert url.startswith("https://idp/auth?response_type=code&client_id=web&")
    assert "code_challenge_method=S256" in url and "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fauth%2Fcallback" in url
    assert len({SignInRequest.new().verifier for _ in range(5)}) == 5


def test_only_paths_of_this_proxy_are_followed_after_sign_in():
    assert safe_next("/ui/") == "/ui/"
    for bad in (None, "", "https://evil.example", "//evil.example/x", "/\\evil.example", "ui"):
        assert safe_next(bad) == "/"


def test_what_looks_like_a_jwt():
    assert looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig")
    assert not looks_like_jwt("an-api-key") and not looks_like_jwt("eyJ..") and not looks_like_jwt("a.b.c")
