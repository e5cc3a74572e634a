"""TLS and authentication for the daemon's endpoint, in the format of Prometheus's exporter-toolkit
web config (``--web-config FILE``), plus bearer tokens (``--bearer-token-file FILE``).

.. code-block:: yaml

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_ca_file: ca.crt         # mTLS: client certificates must chain to this CA
      client_auth_type: RequireAndVerifyClientCert
      client_allowed_sans: [prometheus.example.org]   # optional allow-list: others get 403
      min_version: TLS12
    basic_auth_users:
      prometheus: $2b$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':')

Every check a request goes through, in order:

1. TLS handshake (when ``tls_server_config`` is set). With ``RequireAndVerifyClientCert`` a client
   without a certificate signed by ``client_ca_file`` fails here: there is no HTTP exchange to
   answer 403 on. ``VerifyClientCertIfGiven`` verifies a certificate when one is sent.
2. 403 when ``client_allowed_sans`` is set and the client's verified certificate has none of those
   subject alternative names (or the client sent none).
3. 401 with ``WWW-Authenticate`` when basic-auth users or bearer tokens are configured and the
   request carries none that match. Either kind of credential is enough.

``/healthz`` skips steps 2 and 3 (liveness probes; it says only "ok"), not step 1.

The files (web config, certificates, keys, CA, token file) are checked for changes on every request
and re-read when they change, without a restart. A change that does not load (bad YAML, a key
that does not match its certificate, an empty token file) is logged and the previous settings stay
in force: a broken edit never opens the endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ortel.exporter")

REALM = "ortel"
UNPROTECTED_PATHS = frozenset({"/healthz"})

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's TLS can ask for a certificate without verifying it; Python's ssl module cannot, and an
# unverified certificate proves nothing anyway.
UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "client_allowed_sans",
    "min_version",
    "max_version",
}
TLS_UNSUPPORTED = {"cert", "key", "client_ca", "cipher_suites", "curve_preferences"}
TLS_UNSUPPORTED |= {"prefer_server_cipher_suites"}
TOP_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}
BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
MAX_FILE_BYTES = 1024 * 1024
AUTH_CACHE_SIZE = 1024  # successful basic-auth checks remembered (bcrypt costs ~60 ms each)


class WebConfigError(Exception):
    """A web config or token file that cannot be used: one line, exit 2 at startup."""


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: frozenset[str] = frozenset()
    min_version: str = "TLS12"
    max_version: str | None = None

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True)
class WebConfig:
    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash


def _read(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WebConfigError(f"{what} {path} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_bytes()
    except OSError as e:
        raise WebConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None


def _str(v: object, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise WebConfigError(f"{where} must be a non-empty string")
    return v


def _tls(d: object, base: Path, where: str) -> TLSSettings:
    if not isinstance(d, dict):
        raise WebConfigError(f"{where}: tls_server_config must be a mapping")
    for k in d:
        if k in TLS_UNSUPPORTED:
            raise WebConfigError(f"{where}: tls_server_config.{k} is not supported by ortel")
        if k not in TLS_KEYS:
            known = ", ".join(sorted(TLS_KEYS))
            raise WebConfigError(f"{where}: unknown key tls_server_config.{k} (known: {known})")
    # An explicit null counts as missing: it would reach the TLS context as a None path.
    for k in ("cert_file", "key_file"):
        if d.get(k) is None:
            raise WebConfigError(f"{where}: tls_server_config.{k} is required")

    def path(k: str) -> Path | None:
        v = d.get(k)
        return None if v is None else base / _str(v, f"{where}: tls_server_config.{k}")

    def required(k: str) -> Path:
        return base / _str(d[k], f"{where}: tls_server_config.{k}")

    auth = d.get("client_auth_type") or "NoClientCert"
    if auth in UNSUPPORTED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}: client_auth_type {auth} is not supported (ortel verifies every client "
            "certificate it asks for): use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    if auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"{where}: client_auth_type {auth!r} is not one of {', '.join(CLIENT_AUTH)}"
        )
    ca = path("client_ca_file")
    if auth != "NoClientCert" and ca is None:
        raise WebConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
    if auth == "NoClientCert" and ca is not None:
        raise WebConfigError(
            f"{where}: client_ca_file is set but client_auth_type is NoClientCert: set "
            "client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven"
        )
    sans = d.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
        raise WebConfigError(f"{where}: client_allowed_sans must be a list of names")
    if sans and auth == "NoClientCert":
        raise WebConfigError(f"{where}: client_allowed_sans needs client certificates")

    def version(k: str) -> str | None:
        v = d.get(k)
        if v is not None and v not in TLS_VERSIONS:
            raise WebConfigError(
                f"{where}: tls_server_config.{k} {v!r} is not one of {', '.join(TLS_VERSIONS)}"
            )
        return v

    # A null minimum means the default, as an absent one does: None maps to no TLS version.
    min_version = version("min_version") or "TLS12"
    max_version = version("max_version")
    return TLSSettings(
        cert_file=required("cert_file"),
        key_file=required("key_file"),
        client_ca_file=ca,
        client_auth_type=auth,
        client_allowed_sans=frozenset(sans),
        min_version=min_version,
        max_version=max_version,
    )


def _users(d: object, where: str) -> dict[str, bytes]:
    if not isinstance(d, dict):
        raise WebConfigError(f"{where}: basic_auth_users must map user names to bcrypt hashes")
    out: dict[str, bytes] = {}
    for user, h in d.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{where}: basic_auth_users: bad user name {user!r}")
        if not isinstance(h, str) or not BCRYPT_RE.match(h):
            # Never echo the value: it may be a plain-text password pasted by mistake.
            raise WebConfigError(
                f"{where}: basic_auth_users.{user} is not a bcrypt hash ($2a$/$2b$/$2y$, e.g. "
                "from htpasswd -nBC 10)"
            )
        out[user] = h.encode()
    return out


def parse_web_config(path: Path) -> WebConfig:
    """Parse and validate a web config file (certificates are loaded by ``Policy.build``)."""
    import yaml

    text = _read(path, "web config")
    try:
        doc = yaml.safe_load(text)
    except Exception as e:  # every YAML error type means "not valid"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WebConfigError(f"web config {path} is not valid YAML: {first}") from None
    if doc is None:
        return WebConfig()
    where = f"web config {path}"
    if not isinstance(doc, dict):
        raise WebConfigError(f"{where}: the top level must be a mapping")
    for k in doc:
        if k not in TOP_KEYS:
            raise WebConfigError(
                f"{where}: unknown key {k!r} (known: {', '.join(sorted(TOP_KEYS))})"
            )
    if doc.get("http_server_config"):
        raise WebConfigError(f"{where}: http_server_config is not supported by ortel")
    base = path.parent
    tls_doc = doc.get("tls_server_config")
    tls = None if tls_doc is None else _tls(tls_doc, base, where)
    users = {} if doc.get("basic_auth_users") is None else _users(doc["basic_auth_users"], where)
    return WebConfig(tls, users)


def load_tokens(path: Path) -> tuple[bytes, ...]:
    """Bearer tokens, one per line (several allow rotation without a gap)."""
    raw = _read(path, "bearer token file")
    tokens = tuple(t for t in (line.strip() for line in raw.splitlines()) if t)
    if not tokens:
        raise WebConfigError(f"bearer token file {path} holds no token")
    if any(len(t) < 16 for t in tokens):
        raise WebConfigError(f"bearer token file {path}: tokens must be at least 16 characters")
    return tokens


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as e:
        why = getattr(e, "strerror", None) or getattr(e, "reason", None) or e
        raise WebConfigError(
            f"cannot load TLS certificate {tls.cert_file} with key {tls.key_file}: {why}"
        ) from None
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as e:
            why = getattr(e, "strerror", None) or getattr(e, "reason", None) or e
            raise WebConfigError(f"cannot load client CA {tls.client_ca_file}: {why}") from None
    ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return ctx


@dataclass(frozen=True)
class Verdict:
    code: int  # 200: go on; 401 or 403: answer that
    headers: tuple[tuple[str, str], ...] = ()


ALLOW = Verdict(200)


def peer_sans(cert: Mapping[str, Any] | None) -> set[str]:
    """Subject alternative names (DNS, IP, email, URI values) of a verified peer certificate."""
    if not cert:
        return set()
    return {str(v) for _, v in cert.get("subjectAltName", ())}


class Policy:
    """One loaded configuration: the TLS context and the credentials. Immutable once built."""

    def __init__(
        self,
        web: WebConfig | None = None,
        tokens: tuple[bytes, ...] = (),
    ) -> None:
        web = web or WebConfig()
        self.tls = web.tls
        self.ssl_context = None if web.tls is None else ssl_context(web.tls)
        self.users = dict(web.users)
        self.tokens = tokens
        self.allowed_sans = web.tls.client_allowed_sans if web.tls else frozenset()
        self._dummy = self._dummy_hash() if self.users else b""
        self._key = secrets.token_bytes(32)  # keys the cache of successful logins
        self._ok: dict[bytes, None] = {}
        self._lock = threading.Lock()

    @property
    def authenticates(self) -> bool:
        """Whether anything restricts who may read: credentials or verified client certs."""
        client_certs = self.tls is not None and self.tls.client_auth_type != "NoClientCert"
        return bool(self.users or self.tokens or client_certs)

    def _dummy_hash(self) -> bytes:
        # Unknown users are checked against a hash of the same cost, so the time an answer takes
        # does not tell which user names exist.
        import bcrypt

        m = BCRYPT_RE.match(next(iter(self.users.values())).decode())
        assert m is not None  # parse_web_config admits only hashes that match
        cost = int(m.group(1))
        return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=max(4, cost)))

    def _basic_ok(self, user: str, password: str) -> bool:
        import bcrypt

        pw = password.encode()
        hashed = self.users.get(user, self._dummy)
        mark = hmac.new(self._key, b"%s\0%s\0%s" % (user.encode(), pw, hashed), hashlib.sha256)
        key = mark.digest()
        if key in self._ok and user in self.users:
            return True
        try:
            ok = bcrypt.checkpw(pw, hashed)
        except ValueError:  # over 72 bytes, or a hash bcrypt cannot read
            ok = False
        ok = ok and user in self.users
        if ok:
            with self._lock:
                if len(self._ok) >= AUTH_CACHE_SIZE:
                    self._ok.pop(next(iter(self._ok)))
                self._ok[key] = None
        return ok

    def _bearer_ok(self, token: bytes) -> bool:
        ok = False
        for t in self.tokens:  # no early exit: every token is compared every time
            ok |= hmac.compare_digest(token, t)
        return ok

    def _challenge(self) -> Verdict:
        headers = []
        if self.users:
            headers.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
        if self.tokens:
            headers.append(("WWW-Authenticate", f'Bearer realm="{REALM}"'))
        return Verdict(401, tuple(headers))

    def check(self, path: str, authorization: str | None, peercert: Any = None) -> Verdict:
        """What a request to ``path`` with this Authorization header and client cert gets."""
        if path in UNPROTECTED_PATHS:
            return ALLOW
        if self.allowed_sans and not (peer_sans(peercert) & self.allowed_sans):
            return Verdict(403)
        if not (self.users or self.tokens):
            return ALLOW
        scheme, _, cred = (authorization or "").strip().partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if scheme == "basic" and self.users:
            try:
                user, sep, password = base64.b64decode(cred, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return self._challenge()
            if sep and self._basic_ok(user, password):
                return ALLOW
        elif scheme == "bearer" and self.tokens and self._bearer_ok(cred.encode()):
            return ALLOW
        return self._challenge()


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[object, ...], ...]:
    # (path, mtime, size, inode), or (path, None) for a file that cannot be read.
    out: list[tuple[object, ...]] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((str(p), None))
    return tuple(out)


class Security:
    """The live policy of the endpoint: reloaded when its files change, kept when a reload fails.

    Constructing it loads the files and raises WebConfigError when they are unusable (at startup
    that is a configuration error). Later failures only log, once per version of the files.
    """

    def __init__(self, web_config: Path | None = None, token_file: Path | None = None) -> None:
        self.web_config = web_config
        self.token_file = token_file
        self._lock = threading.Lock()
        self.policy, self._watch = self._load()  # _watch: the files whose change means reload
        self._sig = _signature(self._watch)
        self.last_reload_ok = True
        self._failed_sig: tuple[tuple[object, ...], ...] | None = None

    @property
    def configured(self) -> bool:
        return self.web_config is not None or self.token_file is not None

    def _load(self) -> tuple[Policy, tuple[Path, ...]]:
        files: list[Path] = []
        web = None
        tokens: tuple[bytes, ...] = ()
        if self.web_config is not None:
            files.append(self.web_config)
            web = parse_web_config(self.web_config)
            if web.tls is not None:
                files.extend(web.tls.files())
        if self.token_file is not None:
            files.append(self.token_file)
            tokens = load_tokens(self.token_file)
        return Policy(web, tokens), tuple(files)

    def current(self) -> Policy:
        """The policy to apply now; re-reads the files first when any of them changed."""
        if self.configured and _signature(self._watch) != self._sig:
            self.reload()
        return self.policy

    def reload(self, paths: tuple[Path | None, Path | None] | None = None) -> bool:
        """Re-read the files, or ``paths`` (web config, token file) instead of them from now on;
        False, logged, when they do not load."""
        with self._lock:
            if paths is not None:
                self.web_config, self.token_file = paths
            mains = tuple(p for p in (self.web_config, self.token_file) if p is not None)
            try:
                policy, files = self._load()
            except WebConfigError as e:
                self.last_reload_ok = False
                # Retry when any file changes again: the named ones or those last in use.
                self._watch = tuple(dict.fromkeys(mains + self._watch))
                self._sig = sig = _signature(self._watch)
                if self._failed_sig != sig:
                    self._failed_sig = sig
                    log.error("web config not reloaded, previous settings stay in force: %s", e)
                return False
            self.policy, self._watch = policy, files
            self._sig = _signature(files)
            self.last_reload_ok = True
            self._failed_sig = None
            log.info("web config loaded (%s)", describe(policy))
            return True


def describe(policy: Policy) -> str:
    parts = []
    if policy.tls is not None:
        parts.append(f"TLS >= {policy.tls.min_version}, client certs {policy.tls.client_auth_type}")
    if policy.users:
        parts.append(f"{len(policy.users)} basic-auth user(s)")
    if policy.tokens:
        parts.append(f"{len(policy.tokens)} bearer token(s)")
    return ", ".join(parts) or "no TLS, no authentication"
