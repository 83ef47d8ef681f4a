"""Keys that protect personal information (PIPL 个人信息保护法).

Today: the blind-index key. Duplicate detection ("is this person already registered in
this community?") compares a keyed hash (HMAC-SHA256) of the person's identity, never the
plaintext, so the look-up table is useless without the key.

The key comes from ``CIVIC_PII_INDEX_KEY`` (at least 32 characters); in development it is
generated once under the data directory, like the JWT secret, and production refuses to
run without it. Rotating it means re-indexing (the identities are not stored in clear to
re-hash from): keep it as stable as the data it indexes.

And the master key: it wraps every person's data key (see ``infra/pii_crypto.py``). It
comes from ``CIVIC_PII_MASTER_KEY`` (base64 of exactly 32 bytes, AES-256); in development it
is generated once under the data directory, and production refuses to run without it.
Losing it makes every person's data unreadable (as if all were erased): back it up apart
from the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from functools import lru_cache

from infra.dev_secrets import load_or_create, random_token
from infra.settings import Settings

MIN_KEY_CHARS = 32
_DEV_SECRET_NAME = "pii-index-key"
_DEV_MASTER_NAME = "pii-master-key"
MASTER_KEY_BYTES = 32


class PiiKeyError(RuntimeError):
    """The personal-data keys are missing or unusable (a configuration error)."""


@lru_cache(maxsize=8)
def index_key(settings: Settings) -> bytes:
    """The blind-index HMAC key: configured, else (development only) generated once."""
    value = settings.pii_index_key
    if value is None:
        if settings.is_production:
            raise PiiKeyError("CIVIC_PII_INDEX_KEY is required in production")
        value = load_or_create(settings.data_dir, _DEV_SECRET_NAME, random_token)
    if len(value) < MIN_KEY_CHARS:
        raise PiiKeyError(f"CIVIC_PII_INDEX_KEY must be at least {MIN_KEY_CHARS} characters")
    return value.encode()


def blind_index(key: bytes, value: str) -> bytes:
    """HMAC-SHA256 of ``value`` under ``key`` (32 bytes). Deterministic, not reversible."""
    return hmac.new(key, value.encode(), hashlib.sha256).digest()


def random_master_key() -> str:
    """A new master key in the configured form: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()


def parse_master_key(value: str) -> bytes:
    """Decode ``CIVIC_PII_MASTER_KEY`` (standard or URL-safe base64 of 32 bytes)."""
    text = value.strip()
    try:
        if "-" in text or "_" in text:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PiiKeyError("CIVIC_PII_MASTER_KEY must be base64 of 32 bytes") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise PiiKeyError("CIVIC_PII_MASTER_KEY must be base64 of 32 bytes")
    return raw


@lru_cache(maxsize=8)
def master_key(settings: Settings) -> bytes:
    """The master key wrapping the per-person data keys: configured, else (development
    only) generated once under the data directory."""
    value = settings.pii_master_key
    if value is None:
        if settings.is_production:
            raise PiiKeyError("CIVIC_PII_MASTER_KEY is required in production")
        value = load_or_create(settings.data_dir, _DEV_MASTER_NAME, random_master_key)
    return parse_master_key(value)
