"""The web config: parsing (exporter-toolkit format), credentials, client-certificate allow-lists,
and reloading on change. Real TLS connections are in test_http.py."""

from __future__ import annotations

import base64
import hmac
import logging
import os
import ssl
from pathlib import Path

import bcrypt
import pytest
from pki import CLIENT_SAN, PKI, make_pki

from ortel.exporter import webconfig as wc
from ortel.exporter.webconfig import (
    Policy,
    Security,
    WebConfig,
    WebConfigError,
    load_tokens,
    parse_web_config,
)

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
TOKEN = "tok-0123456789abcdef"
TOKEN2 = "tok-fedcba9876543210"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def users_policy(**users: str) -> Policy:
    return Policy(WebConfig(users={u: h.encode() for u, h in (users or {"alice": HASH}).items()}))


# --- parsing -----------------------------------------------------------------------------------


def test_a_full_config_parses_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "web.yml",
        f"""
tls_server_config:
  cert_file: certs/server.crt
  key_file: /abs/server.key
  client_ca_file: ca.crt
  client_auth_type: RequireAndVerifyClientCert
  client_allowed_sans: [prometheus.test, 10.0.0.1]
  min_version: TLS13
basic_auth_users:
  alice: {HASH}
""",
    )
    web = parse_web_config(cfg)
    assert web.tls is not None
    assert web.tls.cert_file == tmp_path / "certs/server.crt"
    assert web.tls.key_file == Path("/abs/server.key")
    assert web.tls.client_ca_file == tmp_path / "ca.crt"
    assert web.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert web.tls.client_allowed_sans == {"prometheus.test", "10.0.0.1"}
    assert web.tls.min_version == "TLS13"
    assert web.users == {"alice": HASH.encode()}


def test_an_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    web = parse_web_config(write(tmp_path / "web.yml", ""))
    assert web.tls is None and web.users == {}


def test_tls_defaults_to_tls12_and_no_client_certificates(tmp_path: Path) -> None:
    web = parse_web_config(
        write(tmp_path / "w.yml", "tls_server_config: {cert_file: a, key_file: b}")
    )
    assert web.tls is not None
    assert (web.tls.min_version, web.tls.client_auth_type) == ("TLS12", "NoClientCert")


def test_a_null_min_version_means_the_default_tls12(tmp_path: Path, pki: PKI) -> None:
    cfg = write(
        tmp_path / "w.yml",
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  min_version: null
  max_version: null
""",
    )
    web = parse_web_config(cfg)
    assert web.tls is not None
    assert (web.tls.min_version, web.tls.max_version) == ("TLS12", None)
    # The null used to reach the TLS context as a version name and fail there with KeyError.
    assert wc.ssl_context(web.tls).minimum_version == ssl.TLSVersion.TLSv1_2


BAD = {
    "not yaml": ("tls_server_config: [", "not valid YAML"),
    "top level list": ("- a\n- b\n", "top level must be a mapping"),
    "unknown top key": ("basic_auth: {}\n", "unknown key 'basic_auth'"),
    "http_server_config": ("http_server_config: {http2: true}\n", "not supported"),
    "tls not a mapping": ("tls_server_config: yes\n", "must be a mapping"),
    "missing key_file": ("tls_server_config: {cert_file: a}\n", "key_file is required"),
    # An explicit null is as missing as an absent key: it would reach the TLS context as None.
    "null cert_file": (
        "tls_server_config: {cert_file: null, key_file: b}\n",
        "tls_server_config.cert_file is required",
    ),
    "null key_file": (
        "tls_server_config: {cert_file: a, key_file: ~}\n",
        "tls_server_config.key_file is required",
    ),
    "unknown tls key": (
        "tls_server_config: {cert_file: a, key_file: b, certfile: c}\n",
        "unknown key tls_server_config.certfile",
    ),
    "cipher suites": (
        "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [x]}\n",
        "cipher_suites is not supported",
    ),
    "request without verify": (
        "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c, "
        "client_auth_type: RequireAnyClientCert}\n",
        "RequireAnyClientCert is not supported",
    ),
    "unknown auth type": (
        "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Always}\n",
        "is not one of",
    ),
    "verify without ca": (
        "tls_server_config: {cert_file: a, key_file: b, "
        "client_auth_type: RequireAndVerifyClientCert}\n",
        "needs client_ca_file",
    ),
    "ca without verify": (
        "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
        "client_auth_type is NoClientCert",
    ),
    "sans without certs": (
        "tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}\n",
        "needs client certificates",
    ),
    "bad min version": (
        "tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}\n",
        "min_version 'SSL3' is not one of",
    ),
    "users not a mapping": ("basic_auth_users: [alice]\n", "must map user names"),
    "user with colon": (f"basic_auth_users: {{'a:b': '{HASH}'}}\n", "bad user name"),
}


@pytest.mark.parametrize(("text", "why"), BAD.values(), ids=BAD.keys())
def test_bad_configs_are_one_clear_line(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(WebConfigError) as e:
        parse_web_config(write(tmp_path / "web.yml", text))
    assert why in str(e.value)
    assert "\n" not in str(e.value)


def test_a_plain_text_password_is_refused_and_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as e:
        parse_web_config(write(tmp_path / "w.yml", "basic_auth_users: {alice: hunter2hunter2}"))
    assert "not a bcrypt hash" in str(e.value) and "hunter2" not in str(e.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read web config"):
        parse_web_config(tmp_path / "absent.yml")


def test_tokens_one_per_line_blank_lines_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens", f"{TOKEN}\n\n  {TOKEN2}  \n")
    assert load_tokens(path) == (TOKEN.encode(), TOKEN2.encode())


@pytest.mark.parametrize(
    ("text", "why"), [("", "holds no token"), ("\n \n", "holds no token"), ("short\n", "16")]
)
def test_bad_token_files(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(WebConfigError, match=why):
        load_tokens(write(tmp_path / "tokens", text))


def test_a_key_that_does_not_match_its_certificate_is_an_error(pki: PKI) -> None:
    tls = wc.TLSSettings(cert_file=pki.server_cert, key_file=pki.client_key)
    with pytest.raises(WebConfigError, match="cannot load TLS certificate"):
        wc.ssl_context(tls)


def test_a_missing_client_ca_is_an_error(pki: PKI, tmp_path: Path) -> None:
    tls = wc.TLSSettings(
        pki.server_cert, pki.server_key, tmp_path / "nope.crt", "RequireAndVerifyClientCert"
    )
    with pytest.raises(WebConfigError, match="cannot load client CA"):
        wc.ssl_context(tls)


def test_ssl_context_follows_the_settings(pki: PKI) -> None:
    tls = wc.TLSSettings(
        pki.server_cert, pki.server_key, pki.ca, "VerifyClientCertIfGiven", min_version="TLS13"
    )
    ctx = wc.ssl_context(tls)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


# --- credentials -------------------------------------------------------------------------------


def test_without_credentials_configured_everything_is_allowed() -> None:
    assert Policy().check("/metrics", None).code == 200


def test_basic_auth_challenge_wrong_and_right() -> None:
    p = users_policy()
    v = p.check("/metrics", None)
    assert v.code == 401
    assert v.headers == (("WWW-Authenticate", 'Basic realm="ortel", charset="UTF-8"'),)
    assert p.check("/metrics", basic("alice", "wrong")).code == 401
    assert p.check("/metrics", basic("mallory", PASSWORD)).code == 401
    assert p.check("/metrics", basic("alice", PASSWORD)).code == 200
    assert p.check("/", basic("alice", PASSWORD).replace("Basic", "basic")).code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"alice:\xff\xfe").decode(),
        basic("alice", "x" * 100),  # over bcrypt's 72 bytes: bcrypt raises, we answer 401
        "Digest username=alice",
        "Basic",
        "",
    ],
)
def test_malformed_authorization_is_401_not_an_error(header: str) -> None:
    assert users_policy().check("/metrics", header).code == 401


def test_bearer_tokens() -> None:
    p = Policy(tokens=(TOKEN.encode(), TOKEN2.encode()))
    v = p.check("/metrics", None)
    assert v.code == 401 and v.headers == (("WWW-Authenticate", 'Bearer realm="ortel"'),)
    assert p.check("/metrics", f"Bearer {TOKEN}").code == 200
    assert p.check("/metrics", f"bearer {TOKEN2}").code == 200
    assert p.check("/metrics", f"Bearer {TOKEN[:-1]}").code == 401  # a prefix is not the token
    assert p.check("/metrics", f"Bearer {TOKEN}x").code == 401
    assert p.check("/metrics", basic("alice", TOKEN)).code == 401


def test_either_credential_is_enough_when_both_are_configured() -> None:
    p = Policy(WebConfig(users={"alice": HASH.encode()}), tokens=(TOKEN.encode(),))
    assert p.check("/metrics", f"Bearer {TOKEN}").code == 200
    assert p.check("/metrics", basic("alice", PASSWORD)).code == 200
    v = p.check("/metrics", None)
    assert v.code == 401 and len(v.headers) == 2  # both challenges offered


def test_healthz_needs_no_credentials() -> None:
    assert users_policy().check("/healthz", None).code == 200


def test_every_token_is_compared_in_constant_time_without_early_exit(monkeypatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(wc.hmac, "compare_digest", spy)
    p = Policy(tokens=(TOKEN.encode(), TOKEN2.encode()))
    assert p.check("/metrics", f"Bearer {TOKEN}").code == 200  # matches the first...
    assert [b for _, b in calls] == [TOKEN.encode(), TOKEN2.encode()]  # ...both compared


def test_an_unknown_user_costs_a_bcrypt_check_too(monkeypatch) -> None:
    p = users_policy()
    seen: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: seen.append(h) or real(pw, h))
    assert p.check("/metrics", basic("mallory", PASSWORD)).code == 401
    assert len(seen) == 1 and seen[0] != HASH.encode()  # the dummy hash, same cost
    assert seen[0][:7] == HASH.encode()[:7]  # "$2b$04$": same algorithm and cost


def test_successful_logins_are_cached_failures_are_not(monkeypatch) -> None:
    p = users_policy()
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(1) or real(pw, h))
    for _ in range(3):
        assert p.check("/metrics", basic("alice", PASSWORD)).code == 200
    assert len(calls) == 1
    for _ in range(3):
        assert p.check("/metrics", basic("alice", "wrong")).code == 401
    assert len(calls) == 4


# --- client certificate allow-list -------------------------------------------------------------


def sans_policy(pki: PKI, auth: str = "VerifyClientCertIfGiven") -> Policy:
    tls = wc.TLSSettings(
        pki.server_cert, pki.server_key, pki.ca, auth, client_allowed_sans=frozenset({CLIENT_SAN})
    )
    return Policy(WebConfig(tls=tls))


def test_allowed_sans(pki: PKI) -> None:
    p = sans_policy(pki)
    ok = {"subjectAltName": (("DNS", CLIENT_SAN),)}
    other = {"subjectAltName": (("DNS", "intruder.test"), ("IP Address", "10.0.0.9"))}
    assert p.check("/metrics", None, ok).code == 200
    assert p.check("/metrics", None, other).code == 403
    assert p.check("/metrics", None, None).code == 403  # no certificate: not on the list
    assert p.check("/metrics", None, {}).code == 403
    assert p.check("/healthz", None, None).code == 200


def test_a_verified_client_certificate_counts_as_authentication(pki: PKI) -> None:
    assert sans_policy(pki).authenticates
    tls_only = Policy(WebConfig(tls=wc.TLSSettings(pki.server_cert, pki.server_key)))
    assert tls_only.ssl_context is not None and not tls_only.authenticates


# --- reloading ---------------------------------------------------------------------------------


def bump(path: Path, text: str) -> None:
    """Rewrite a file so its signature changes even within one mtime tick."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_changed_token_file_applies_to_the_next_request(tmp_path: Path) -> None:
    tokens = write(tmp_path / "tokens", TOKEN + "\n")
    sec = Security(token_file=tokens)
    assert sec.current().check("/metrics", f"Bearer {TOKEN}").code == 200
    bump(tokens, TOKEN2 + "\n")
    assert sec.current().check("/metrics", f"Bearer {TOKEN}").code == 401
    assert sec.current().check("/metrics", f"Bearer {TOKEN2}").code == 200
    assert sec.last_reload_ok


def test_a_broken_edit_keeps_the_previous_settings_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ortel.exporter")
    cfg = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{HASH}'}}\n")
    sec = Security(web_config=cfg)
    bump(cfg, "basic_auth_users: {alice: [")  # half-written
    for _ in range(3):
        p = sec.current()
        assert p.check("/metrics", None).code == 401  # never falls open
        assert p.check("/metrics", basic("alice", PASSWORD)).code == 200
    assert not sec.last_reload_ok
    assert len([r for r in caplog.records if "not reloaded" in r.getMessage()]) == 1
    bump(cfg, "")  # finished edit: no auth any more, by intent
    assert sec.current().check("/metrics", None).code == 200
    assert sec.last_reload_ok


def test_a_deleted_file_keeps_the_previous_settings(tmp_path: Path) -> None:
    tokens = write(tmp_path / "tokens", TOKEN + "\n")
    sec = Security(token_file=tokens)
    tokens.unlink()
    assert sec.current().check("/metrics", f"Bearer {TOKEN}").code == 200
    assert not sec.last_reload_ok
    write(tokens, TOKEN2 + "\n")
    assert sec.current().check("/metrics", f"Bearer {TOKEN2}").code == 200


def test_certificate_files_are_watched_too(tmp_path: Path, pki: PKI) -> None:
    cfg = write(
        tmp_path / "web.yml",
        f"tls_server_config: {{cert_file: {pki.server_cert}, key_file: {pki.server_key}}}\n",
    )
    sec = Security(web_config=cfg)
    first = sec.current()
    assert first.ssl_context is not None
    os.utime(pki.server_cert)  # rotated in place (same content is enough to reload)
    st = pki.server_cert.stat()
    os.utime(pki.server_cert, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sec.current() is not first


def test_reload_can_switch_to_other_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a", TOKEN + "\n")
    b = write(tmp_path / "b", TOKEN2 + "\n")
    sec = Security(token_file=a)
    assert sec.reload((None, b))
    assert sec.current().check("/metrics", f"Bearer {TOKEN2}").code == 200
    assert sec.reload((None, None))
    assert not sec.configured and sec.current().check("/metrics", None).code == 200


def test_unusable_files_at_startup_raise(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError):
        Security(token_file=tmp_path / "absent")
