"""TLS on a proxy's own port: the engine's certificate, or one from the object store.

The engine's certificate is the server's (`cert`/`cert_key` in the config), else the
self-signed one in `<home>/tls/`, made on first use and made anew when it is within
RENEW_BEFORE of its expiry. A user's certificate and key are OBJECT STORE paths, read
through the store's walker (never host paths: a key could otherwise read any PEM file
the engine's user can).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from contextlib import closing
from pathlib import Path

from ..._config import Config, atomic_write
from ..._exceptions import InvalidRequest
from .._objects import ObjectService

__all__ = [
    "engine_context",
    "engine_files",
    "engine_paths",
    "reload",
    "self_signed",
    "stamp",
    "store_context",
]

RENEW_BEFORE = datetime.timedelta(days=30)
_MAX_PEM = 1 << 20


def self_signed(cert: Path, key: Path) -> None:
    """A self-signed certificate for this machine's names, valid 825 days."""
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
    pem = serialization.PrivateFormat.PKCS8
    key_bytes = private.private_bytes(serialization.Encoding.PEM, pem, serialization.NoEncryption())
    atomic_write(key, key_bytes, mode=0o600)
    atomic_write(cert, certificate.public_bytes(serialization.Encoding.PEM))


def _expiring(cert: Path) -> bool:
    from cryptography import x509

    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return True
    return loaded.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < RENEW_BEFORE


def engine_paths(config: Config) -> tuple[Path, Path]:
    """Where the engine's certificate and key are (nothing is made)."""
    if config.cert and config.cert_key:
        return Path(config.cert).expanduser(), Path(config.cert_key).expanduser()
    return config.home.tls_dir / "cert.pem", config.home.tls_dir / "key.pem"


def engine_files(config: Config) -> tuple[Path, Path]:
    """The engine's certificate and key (the user's, or the self-signed one, made anew
    when it is missing or near its expiry)."""
    cert, key = engine_paths(config)
    if config.cert and config.cert_key:
        return cert, key
    if not (cert.exists() and key.exists()) or _expiring(cert):
        config.home.tls_dir.mkdir(mode=0o700, exist_ok=True)
        self_signed(cert, key)
    return cert, key


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def engine_context(config: Config) -> ssl.SSLContext:
    cert, key = engine_files(config)
    context = _server_context()
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequest(f"tls: the engine's certificate {cert} does not load: {exc}",
                             field="tls") from None  # fmt: skip
    return context


Stamp = tuple[tuple[int, int, int], ...] | None


def stamp(*files: Path) -> Stamp:
    """What tells one version of `files` from the next (None: one is missing). Each is
    replaced by a rename (`atomic_write`), so a new version has a new inode."""
    try:
        found = [os.stat(path) for path in files]
    except OSError:
        return None
    return tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in found)


def reload(contexts: list[ssl.SSLContext], cert: Path, key: Path) -> None:
    """Load `cert` and `key` into `contexts` (live ones: the next handshakes present the
    new certificate, those done keep theirs). The pair is loaded into a context of its own
    first: one that does not load (a rotation half done: the new key beside the old
    certificate) raises and leaves every context as it was, where loading it straight
    into a live one could leave that one with a certificate and a key that do not match."""
    _server_context().load_cert_chain(cert, key)
    for context in contexts:
        context.load_cert_chain(cert, key)


def _read(objects: ObjectService, path: str, field: str) -> bytes:
    fd, st = objects.walker.open_file(objects.storage.parts(path), path)
    with closing(os.fdopen(fd, "rb")) as handle:
        if st.st_size > _MAX_PEM:
            raise InvalidRequest(f"{field}: {path!r} is too big for a PEM file", field=field)
        return handle.read(_MAX_PEM)


def store_context(
    objects: ObjectService, cert_path: str, key_path: str, scratch: Path
) -> ssl.SSLContext:
    """A server context from PEM files of the object store (`scratch`: a private folder
    where they are written for OpenSSL, which loads files, and removed at once)."""
    cert, key = _read(objects, cert_path, "tls_cert"), _read(objects, key_path, "tls_key")
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    context = _server_context()
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        atomic_write(cert_file, cert, mode=0o600)
        atomic_write(key_file, key, mode=0o600)
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidRequest(
                f"tls_cert: {cert_path!r} and {key_path!r} are not a PEM certificate chain and "
                f"its private key ({exc})", field="tls_cert",
            ) from None  # fmt: skip
    return context
