"""Ed25519 signatures over bundle.json, which holds the sha256 of every other file of the bundle.

Why: hashes catch a corrupt bundle, not a tampered one: whoever can edit a file can edit its hash too. A
copy with every threshold at 1e12 passed every check and silently disabled alerts. The trainer signs with
a private key kept off the gateways; agents configured with the public keys (`trusted_keys`) refuse
bundles that are unsigned or whose bundle.json changed after signing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.errors import BundleError, ConfigError

SIGNATURE_NAME = "bundle.sig"  # beside bundle.json; the raw 64-byte Ed25519 signature of its bytes
MANIFEST_NAME = "bundle.json"


def generate_keypair(folder: Path, name: str = "edgegan-signing") -> tuple[Path, Path]:
    """A new key pair as PEM files: `name.key` (private, mode 0600) and `name.pub`."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    if private.exists() or public.exists():
        raise ConfigError(f"{folder}: {private.name} or {public.name} exists already; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public.write_bytes(_public_pem(key))
    return private, public


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_pem(private_key: Path) -> bytes:
    """The PEM public key that verifies what `private_key` signs (for a signer's own self-test)."""
    return _public_pem(_private_key(private_key))


def _private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not a readable unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: an Ed25519 key is needed, found {type(key).__name__}")
    return key


def _public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable PEM public key ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: an Ed25519 key is needed, found {type(key).__name__}")
    return key


def sign_bundle(folder: Path, private_key: Path) -> Path:
    """Write `bundle.sig` for the bundle.json in `folder`."""
    signature = _private_key(private_key).sign((folder / MANIFEST_NAME).read_bytes())
    path = folder / SIGNATURE_NAME
    path.write_bytes(signature)
    return path


def check_signature(folder: Path, trusted_keys: Sequence[Path]) -> None:
    """Raise BundleError unless bundle.sig is a signature of bundle.json by one of `trusted_keys`."""
    signature_path = folder / SIGNATURE_NAME
    if not signature_path.is_file():
        raise BundleError(f"{folder}: unsigned ({SIGNATURE_NAME} missing) and trusted_keys are configured")
    signature = signature_path.read_bytes()
    manifest = (folder / MANIFEST_NAME).read_bytes()
    for key_path in trusted_keys:
        try:
            _public_key(key_path).verify(signature, manifest)
            return
        except InvalidSignature:
            continue
    raise BundleError(f"{folder}: {SIGNATURE_NAME} matches no trusted key: bundle.json changed after signing")
