"""A throwaway PKI for TLS tests: a CA, a server certificate for 127.0.0.1, client certificates
signed by that CA, and a second ("rogue") CA whose client certificate must not be trusted.

Generated with ``cryptography`` (EC P-256: fast), written as PEM files into a directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_SAN_IP = "127.0.0.1"
CLIENT_SAN = "prometheus.test"
OTHER_CLIENT_SAN = "intruder.test"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    cn: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@dataclass(frozen=True)
class PKI:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path  # SAN prometheus.test, signed by ca
    client_key: Path
    other_client_cert: Path  # SAN intruder.test, signed by ca
    other_client_key: Path
    rogue_client_cert: Path  # SAN prometheus.test, signed by a CA nobody trusts
    rogue_client_key: Path

    def client_context(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        """A client context that trusts our CA and presents ``cert`` when given."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            ctx.load_cert_chain(cert, key)
        return ctx


def make_pki(directory: Path) -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca("ortel test CA")
    rogue_key, rogue = _ca("ortel test CA")  # same name, other key: must still fail
    server = _leaf(
        ca_key,
        ca,
        "ortel",
        [
            x509.IPAddress(ipaddress.ip_address(SERVER_SAN_IP)),
            x509.DNSName("localhost"),
        ],
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _leaf(
        ca_key, ca, CLIENT_SAN, [x509.DNSName(CLIENT_SAN)], ExtendedKeyUsageOID.CLIENT_AUTH
    )
    other = _leaf(
        ca_key,
        ca,
        OTHER_CLIENT_SAN,
        [x509.DNSName(OTHER_CLIENT_SAN)],
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    rogue_client = _leaf(
        rogue_key, rogue, CLIENT_SAN, [x509.DNSName(CLIENT_SAN)], ExtendedKeyUsageOID.CLIENT_AUTH
    )
    d = directory
    return PKI(
        dir=d,
        ca=_write_cert(ca, d / "ca.crt"),
        server_cert=_write_cert(server[1], d / "server.crt"),
        server_key=_write_key(server[0], d / "server.key"),
        client_cert=_write_cert(client[1], d / "client.crt"),
        client_key=_write_key(client[0], d / "client.key"),
        other_client_cert=_write_cert(other[1], d / "other.crt"),
        other_client_key=_write_key(other[0], d / "other.key"),
        rogue_client_cert=_write_cert(rogue_client[1], d / "rogue.crt"),
        rogue_client_key=_write_key(rogue_client[0], d / "rogue.key"),
    )
