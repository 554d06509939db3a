"""Certificates and keys for the test control plane.

A throw-away CA signs the API server's serving certificate (for localhost,
127.0.0.1, the real node's address and the ``kubernetes`` Service's names and
cluster IPs) and one client certificate per user; a separate RSA key pair signs
service-account tokens. Nothing here is meant for anything but a test cluster
on loopback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)


def file_stem(user: str) -> str:
    """File name (without extension) of a user's certificate and key."""
    return user.replace(":", "-")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _issue(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
           server_names: list[str] | None = None, client: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server_names:
        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_pki(directory: Path, users: dict[str, str | None]) -> None:
    """Write ca.crt/key, apiserver.crt/key, sa.key/pub and a client pair per user
    (``users`` maps the user name, the certificate's CN, to its group or None)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("agentproxy-test-ca")
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    _write_key(directory / "ca.key", ca_key)
    _write_cert(directory / "ca.crt", ca)

    server_key = _key()
    server = _issue(_name("kube-apiserver"), server_key, ca_name, ca_key, server_names=[
        "localhost", "127.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local", "127.2.0.1", "198.18.0.1", "198.18.1.1"])
    _write_key(directory / "apiserver.key", server_key)
    _write_cert(directory / "apiserver.crt", server)

    for user, group in users.items():
        key = _key()
        cert = _issue(_name(user, group), key, ca_name, ca_key, client=True)
        _write_key(directory / f"{file_stem(user)}.key", key)
        _write_cert(directory / f"{file_stem(user)}.crt", cert)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def write_serving_cert(directory: Path, stem: str, cn: str, names: list[str]) -> None:
    """``stem``.crt/key: a serving certificate for ``names`` signed by the CA
    that ``write_pki`` wrote into ``directory`` (the real node's kubelet)."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = _key()
    cert = _issue(_name(cn), key, ca.subject, ca_key, server_names=names)
    _write_key(directory / f"{stem}.key", key)
    _write_cert(directory / f"{stem}.crt", cert)
