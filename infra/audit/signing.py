"""Signing checkpoints, behind one small interface (Ed25519 today; SM2 can be added later).

The key is a PEM private key in ``CIVIC_SIGNING_KEY``. In development it is generated once
and kept under ``<data dir>/secrets/checkpoint-signing-key.pem``; production refuses to start
without it, because a checkpoint signed by a throw-away key proves nothing.

Verification is a pure function of (algorithm, raw public key, message, signature), so
clients and ``infra.audit.proof_checks`` can re-check a signature with no server at hand.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infra.dev_secrets import load_or_create

ED25519 = "ed25519"
DEV_KEY_NAME = "checkpoint-signing-key.pem"


class SigningKeyError(RuntimeError):
    """The configured signing key is missing or unusable."""


class Signer(Protocol):
    #: the signature algorithm's name as checkpoints carry it ("ed25519").
    algorithm: str

    def sign(self, message: bytes) -> bytes: ...

    def public_key_raw(self) -> bytes: ...

    def public_key_pem(self) -> str: ...


def key_id(public_key_raw: bytes) -> str:
    """A short, stable name of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


class Ed25519Signer:
    algorithm = ED25519

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key()

    @classmethod
    def from_pem(cls, pem: str) -> Ed25519Signer:
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"CIVIC_SIGNING_KEY is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("CIVIC_SIGNING_KEY must be an Ed25519 private key")
        return cls(key)

    @staticmethod
    def generate_pem() -> str:
        return (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key_raw(self) -> bytes:
        return self._public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_key_pem(self) -> str:
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _verify_ed25519(public_key_raw: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


#: algorithm name → verify(raw public key, message, signature). SM2 would add a line here.
VERIFIERS: dict[str, Callable[[bytes, bytes, bytes], bool]] = {ED25519: _verify_ed25519}


def verify_signature(
    algorithm: str, public_key_raw: bytes, message: bytes, signature: bytes
) -> bool:
    verify = VERIFIERS.get(algorithm.lower())
    return verify is not None and verify(public_key_raw, message, signature)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    """Standard base64; raises ValueError on anything else."""
    return base64.b64decode(text.encode(), validate=True)


def load_signer(*, configured_pem: str | None, production: bool, data_dir: Path) -> Signer:
    """The checkpoint signer from configuration (generated under ``data_dir`` in development)."""
    if configured_pem:
        # Environments that cannot hold newlines pass the PEM with backslash-n escapes.
        return Ed25519Signer.from_pem(configured_pem.replace("\\n", "\n"))
    if production:
        raise SigningKeyError(
            "CIVIC_SIGNING_KEY (an Ed25519 PEM private key) is required in production"
        )
    return Ed25519Signer.from_pem(
        load_or_create(data_dir, DEV_KEY_NAME, Ed25519Signer.generate_pem)
    )
