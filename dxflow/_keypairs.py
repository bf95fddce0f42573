"""Key pairs: generation, loading, signing and verification (RSA and Ed25519).

Shared by the SDK (which signs challenges) and the core (which verifies them).
`cryptography` is imported on first use so that ``import dxflow`` stays fast.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._config import atomic_write
from ._exceptions import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = [
    "KeyPair",
    "PrivateKey",
    "PublicKey",
    "challenge_message",
    "generate_key_pair",
    "load_private_key",
    "parse_public_key",
]

KeyType = Literal["rsa", "ed25519"]
MIN_RSA_BITS = 2048
_AUTH_PREFIX = "dxflow-auth-v1"


def challenge_message(engine_id: str, nonce: str) -> str:
    """The exact text a client signs to answer a challenge."""
    return f"{_AUTH_PREFIX}:{engine_id}:{nonce}"


def is_challenge_message(message: str, nonce: str) -> bool:
    """Clients sign only challenge messages, never arbitrary text a server sends."""
    parts = message.split(":")
    return len(parts) == 3 and parts[0] == _AUTH_PREFIX and parts[2] == nonce


@dataclass(frozen=True)
class PublicKey:
    pem: str
    key_type: KeyType
    fingerprint: str

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

        key = serialization.load_pem_public_key(self.pem.encode())
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            else:
                return False
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    path: Path
    key: RSAPrivateKey | Ed25519PrivateKey
    public: PublicKey

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(message)

    def sign_b64(self, message: str) -> str:
        return base64.b64encode(self.sign(message.encode())).decode()


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    fingerprint: str


def _describe(key: object) -> tuple[KeyType, str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits, got {key.key_size}")
        key_type: KeyType = "rsa"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key_type = "ed25519"
    else:
        raise ValueError("only RSA and Ed25519 keys are supported")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return key_type, pem, "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def parse_public_key(text: str) -> PublicKey:
    """Read a PEM (SubjectPublicKeyInfo or PKCS#1) or OpenSSH public key.

    Raises ValueError with a message fit for the user.
    """
    from cryptography.hazmat.primitives import serialization

    data = text.strip().encode()
    try:
        if data.startswith(b"ssh-"):
            key: object = serialization.load_ssh_public_key(data)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM or OpenSSH public key ({exc})") from None
    key_type, pem, fingerprint = _describe(key)
    return PublicKey(pem=pem, key_type=key_type, fingerprint=fingerprint)


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Load an unencrypted private key (RSA or Ed25519): PEM, or OpenSSH as `ssh-keygen`
    writes it. A file that others may read is refused, as ssh refuses it."""
    path = Path(path).expanduser()
    data, mode = _read_key_file(path)
    key = _parse_private(path, data)
    if mode is not None and mode & 0o077:
        raise ConfigError(
            f"the private key file {path} is readable by others (mode {mode:04o}) and is "
            f"refused, as ssh refuses an unprotected private key file; make it private to "
            f"you with: chmod 600 {shlex.quote(str(path))}"
        )
    try:
        key_type, pem, fingerprint = _describe(key.public_key())
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return PrivateKey(path=path, key=key, public=PublicKey(pem, key_type, fingerprint))


def _read_key_file(path: Path) -> tuple[bytes, int | None]:
    """The file's bytes and, for a regular file, its permission bits (from the same open
    file, so a chmod in between cannot slip past the check)."""
    try:
        with path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            return handle.read(), stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a private key file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror}") from None


def _parse_private(path: Path, data: bytes) -> RSAPrivateKey | Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    quoted = shlex.quote(str(path))
    unsupported = (
        f"{path}: only RSA and Ed25519 keys are supported; make one with "
        "`dxflow key generate NAME --type ed25519` or `ssh-keygen -t ed25519`"
    )
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key: object = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for "it has a passphrase"
        raise ConfigError(
            f"{path} is protected by a passphrase, and dxflow needs an unencrypted key; "
            f"make a copy without one: cp {quoted} {quoted}.dxflow && "
            f"ssh-keygen -p -N '' -f {quoted}.dxflow (then use {path}.dxflow)"
        ) from None
    except UnsupportedAlgorithm:  # a key type cryptography cannot load (a FIDO key, say)
        raise ConfigError(unsupported) from None
    except ValueError:
        raise ConfigError(f"{path} is {_not_a_private_key(data)}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(unsupported)
    return key


def _not_a_private_key(data: bytes) -> str:
    text = data.lstrip()
    if text.startswith((b"ssh-", b"-----BEGIN PUBLIC KEY", b"-----BEGIN RSA PUBLIC KEY")):
        return "a public key: give the private half (the file without .pub)"
    return (
        "not an unencrypted PEM private key (nor an OpenSSH one); make a key pair with "
        "`dxflow key generate NAME`"
    )


def generate_key_pair(
    path: str | os.PathLike[str], key_type: KeyType = "rsa", bits: int = 2048
) -> KeyPair:
    """Write a new private key to `path` (mode 0600) and its public key to `path`.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    path = Path(path).expanduser()
    if path.exists():
        raise ConfigError(f"{path} exists already; remove it or choose another name")
    if key_type == "rsa":
        if bits < MIN_RSA_BITS:
            raise ConfigError(f"RSA keys need at least {MIN_RSA_BITS} bits")
        key: RSAPrivateKey | Ed25519PrivateKey = rsa.generate_private_key(65537, bits)
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ConfigError(f"unknown key type {key_type!r} (rsa or ed25519)")
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _, pem, fingerprint = _describe(key.public_key())
    public_path = path.with_name(path.name.removesuffix(".pem") + ".pub")
    atomic_write(path, private, mode=0o600)
    atomic_write(public_path, pem.encode(), mode=0o644)
    return KeyPair(private=path, public=public_path, fingerprint=fingerprint)
