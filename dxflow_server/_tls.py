"""TLS material: the user's certificate, or a self-signed one made on first use."""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from dxflow._config import Config, atomic_write
from dxflow._exceptions import ConfigError

__all__ = ["tls_files"]


def _self_signed(cert: Path, key: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dxflow engine")])
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    atomic_write(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    atomic_write(cert, certificate.public_bytes(serialization.Encoding.PEM))


def tls_files(config: Config) -> tuple[Path, Path]:
    """(certificate, private key) for `config`; generated once when the user gave none."""
    if bool(config.cert) != bool(config.cert_key):
        raise ConfigError("--cert and --cert-key go together")
    if config.cert and config.cert_key:
        cert, key = Path(config.cert).expanduser(), Path(config.cert_key).expanduser()
        for path in (cert, key):
            if not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        return cert, key
    cert, key = config.home.tls_dir / "cert.pem", config.home.tls_dir / "key.pem"
    if not (cert.exists() and key.exists()):
        config.home.tls_dir.mkdir(mode=0o700, exist_ok=True)
        _self_signed(cert, key)
    return cert, key
