"""Certificates and keys for the local control plane.

One CA signs everything: the API server's serving certificate (valid for 127.0.0.1, the bridge
address and the in-cluster service names, so clients inside pods verify it), client
certificates for the admin and for minted users, and the service-account signing key pair.
Keys are ECDSA P-256: fast to generate, so a fresh cluster costs milliseconds here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

_VALIDITY = dt.timedelta(days=365)
SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its private key."""

    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


class Pki:
    """A directory holding the CA and everything it signed; created once, reused on restart."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = CertPair(directory / "ca.crt", directory / "ca.key")
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    def ensure_ca(self) -> None:
        """Create the CA and the service-account key pair unless they already exist."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.ca.cert.exists():
            key = _new_key()
            now = dt.datetime.now(dt.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(_name("optimodel-devcluster-ca"))
                .issuer_name(_name("optimodel-devcluster-ca"))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + _VALIDITY * 10)
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
            _write_key(key, self.ca.key)
            self.ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if not self.sa_key.exists():
            sa = _new_key()
            _write_key(sa, self.sa_key)
            self.sa_pub.write_bytes(
                sa.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )

    def _sign(
        self,
        name: str,
        subject: x509.Name,
        usage: ObjectIdentifier,
        sans: list[x509.GeneralName] | None = None,
    ) -> CertPair:
        ca_key = _load_key(self.ca.key)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        pair = CertPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        _write_key(key, pair.key)
        pair.cert.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        return pair

    def serving_cert(self, name: str, ips: list[str], dns: tuple[str, ...] = SERVICE_NAMES) -> CertPair:
        """A server certificate naming every address and DNS name clients use to reach it."""
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        return self._sign(name, _name(name), ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def client_cert(self, name: str, user: str, groups: tuple[str, ...] = ()) -> CertPair:
        """A client certificate: the API server reads the user from CN and the groups from O."""
        return self._sign(name, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)
