"""Per-person encryption of personal information inside events (PIPL), and crypto-shredding.

Key hierarchy (envelope encryption):

* master key — ``CIVIC_PII_MASTER_KEY`` (32 bytes, see ``infra.pii_keys.master_key``); never
  stored in the database. Its id (``master_key_id``) is the first 16 hex digits of
  SHA-256("civic-pii-master/v1" || key), recorded beside every key it wraps (rotation).
* data key — one per person (per member stream): 32 random bytes, id ``key_id`` (a random
  UUID, hex). Stored only wrapped, in ``person_keys`` (migration 0015):
  ``wrapped_key = 0x01 || nonce(12) || AES-256-GCM(master, data key)`` with associated data
  ``"civic-pii-dek/v1" 0 root_id 0 member_id 0 key_id``, so a wrapped key copied onto another
  person's row does not unwrap.
* sealed field — a ``PersonalData`` value (or any field marked personal) is encrypted as the
  msgspec JSON of the value with AES-256-GCM under the data key, a random 96-bit nonce, and
  associated data ``"civic-pii/v1" 0 stream_id 0 key_id 0 field name``. The event stores::

      {"alg": "A256GCM", "kid": "<key_id>", "nonce": "<b64url>", "ct": "<b64url ct||tag>"}

  (base64url without padding). The hash chain covers exactly this, so it never needs the
  plaintext, and deleting the data key (erasure) leaves every hash valid.

``PersonKeyring`` is the event codec's field cipher for one transaction: it loads (or, on a
person's first registration, creates) the data keys it needs with the transaction's
connection, then encrypts and decrypts synchronously. Nothing here logs values or keys, and
no exception message carries plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALG = "A256GCM"
#: the 国密 profile's cipher (GB/T 32907 SM4 in GCM mode, RFC 8998)
SM4_ALG = "SM4GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
_WRAP_VERSION = b"\x01"
_WRAP_VERSION_SM4 = b"\x02"
_FIELD_AAD = b"civic-pii/v1"
_WRAP_AAD = b"civic-pii-dek/v1"
_SEALED_KEYS = frozenset({"alg", "kid", "nonce", "ct"})

SELECT_KEY = "SELECT key_id, wrapped_key FROM person_keys WHERE root_id = $1 AND member_id = $2"
INSERT_KEY = """
INSERT INTO person_keys (root_id, member_id, key_id, wrapped_key, master_key_id)
VALUES ($1, $2, $3, $4, $5)
"""
DELETE_KEY = "DELETE FROM person_keys WHERE root_id = $1 AND member_id = $2"


class DecryptionFailed(Exception):
    """A sealed value or wrapped key does not open (wrong key, tampered, malformed)."""


@dataclass(frozen=True)
class DataKey:
    key_id: str
    key: bytes = field(repr=False)


def master_key_id(master: bytes) -> str:
    return hashlib.sha256(b"civic-pii-master/v1" + master).hexdigest()[:16]


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    if not isinstance(text, str):
        raise DecryptionFailed("not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise DecryptionFailed("not base64url text") from None


def _aad(*parts: bytes | str | UUID) -> bytes:
    return b"\x00".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)


class Sm4Gcm:
    """SM4-GCM with AESGCM's interface (ciphertext || 16-byte tag). SM4 keys are 128 bits:
    derived from the 256-bit key as the first half of SM3("civic-sm4/v1" || key), so every
    bit of the data or master key counts."""

    def __init__(self, key: bytes) -> None:
        h = hashes.Hash(hashes.SM3())
        h.update(b"civic-sm4/v1" + key)
        self._key = h.finalize()[:16]

    def encrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        enc = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        return enc.update(data) + enc.finalize() + enc.tag

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < 16:
            raise InvalidTag()
        dec = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, data[-16:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(data[:-16]) + dec.finalize()


#: sealed-field algorithm → AEAD over a 256-bit key. Both open whatever the profile, so a
#: deployment's older values stay readable.
_AEADS: dict[str, Callable[[bytes], AESGCM | Sm4Gcm]] = {ALG: AESGCM, SM4_ALG: Sm4Gcm}
_WRAPS: dict[bytes, Callable[[bytes], AESGCM | Sm4Gcm]] = {
    _WRAP_VERSION: AESGCM,
    _WRAP_VERSION_SM4: Sm4Gcm,
}


def cipher_for_profile(profile: str) -> str:
    """The sealed-field algorithm of a crypto profile (standard | gm)."""
    return SM4_ALG if profile == "gm" else ALG


def new_data_key() -> DataKey:
    return DataKey(key_id=uuid4().hex, key=os.urandom(KEY_BYTES))


def wrap_key(master: bytes, root_id: UUID, member_id: UUID, key: DataKey, alg: str = ALG) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    aad = _aad(_WRAP_AAD, root_id, member_id, key.key_id)
    version = _WRAP_VERSION_SM4 if alg == SM4_ALG else _WRAP_VERSION
    return version + nonce + _WRAPS[version](master).encrypt(nonce, key.key, aad)


def unwrap_key(
    master: bytes, root_id: UUID, member_id: UUID, key_id: str, wrapped: bytes
) -> DataKey:
    wrapped = bytes(wrapped)
    aead = _WRAPS.get(wrapped[:1])
    if len(wrapped) != 1 + NONCE_BYTES + KEY_BYTES + 16 or aead is None:
        raise DecryptionFailed("malformed wrapped key")
    nonce, body = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    try:
        key = aead(master).decrypt(nonce, body, _aad(_WRAP_AAD, root_id, member_id, key_id))
    except InvalidTag:
        raise DecryptionFailed("the wrapped key does not open with the master key") from None
    return DataKey(key_id=key_id, key=key)


def is_sealed(value: Any) -> bool:
    """Whether a stored JSON value is a sealed field (not clear personal data)."""
    return isinstance(value, dict) and value.keys() >= _SEALED_KEYS


def seal(
    key: DataKey, stream_id: UUID, field_name: str, plaintext: bytes, alg: str = ALG
) -> dict[str, str]:
    nonce = os.urandom(NONCE_BYTES)
    aad = _aad(_FIELD_AAD, stream_id, key.key_id, field_name)
    ct = _AEADS[alg](key.key).encrypt(nonce, plaintext, aad)
    return {"alg": alg, "kid": key.key_id, "nonce": b64u(nonce), "ct": b64u(ct)}


def open_sealed(key: DataKey, stream_id: UUID, field_name: str, sealed: Any) -> bytes:
    """The plaintext of a sealed field; ``DecryptionFailed`` when it does not open."""
    alg = sealed["alg"] if is_sealed(sealed) else None
    aead = _AEADS.get(alg) if isinstance(alg, str) else None
    if aead is None or sealed["kid"] != key.key_id:
        raise DecryptionFailed("not a sealed value of this key")
    nonce = unb64u(sealed["nonce"])
    if len(nonce) != NONCE_BYTES:
        raise DecryptionFailed("bad nonce")
    try:
        return aead(key.key).decrypt(
            nonce, unb64u(sealed["ct"]), _aad(_FIELD_AAD, stream_id, key.key_id, field_name)
        )
    except InvalidTag:
        raise DecryptionFailed("the sealed value does not open (altered or wrong key)") from None


def open_with_wrapped(
    master: bytes,
    *,
    root_id: UUID,
    member_id: UUID,
    key_id: str | None,
    wrapped_key: bytes | None,
    field_name: str,
    sealed: Any,
) -> bytes | None:
    """Read models: open a sealed field with the row's wrapped key. ``None`` when the key is
    gone (crypto-shredded); ``DecryptionFailed`` when it is there but does not open."""
    if key_id is None or wrapped_key is None:
        return None
    key = unwrap_key(master, root_id, member_id, key_id, wrapped_key)
    return open_sealed(key, member_id, field_name, sealed)


class PersonKeyring:
    """The data keys one transaction needs, by stream id; the codec's ``FieldCipher``.

    ``load``/``ensure``/``shred`` run SQL on the transaction's connection (row-level security
    applies); ``encrypt``/``decrypt`` are synchronous and use only keys loaded before.
    """

    def __init__(self, master: bytes, alg: str = ALG) -> None:
        self._master = master
        #: what new values and keys are sealed with (either opens)
        self.alg = alg
        self._keys: dict[UUID, DataKey | None] = {}
        #: streams whose sealed values did not open (tampered): shown as unavailable
        self.failed: set[UUID] = set()

    async def load(self, conn: asyncpg.Connection, root_id: UUID, stream_id: UUID) -> bool:
        """Fetch (once) the stream's data key; False when there is none (shredded/never)."""
        if stream_id not in self._keys:
            row = await conn.fetchrow(SELECT_KEY, root_id, stream_id)
            key = None
            if row is not None:
                try:
                    key = unwrap_key(
                        self._master, root_id, stream_id, row["key_id"], row["wrapped_key"]
                    )
                except DecryptionFailed:
                    self.failed.add(stream_id)
            self._keys[stream_id] = key
        return self._keys[stream_id] is not None

    async def ensure(self, conn: asyncpg.Connection, root_id: UUID, stream_id: UUID) -> None:
        """The stream's data key, created (in this transaction) when it has none yet."""
        if await self.load(conn, root_id, stream_id):
            return
        if stream_id in self.failed:
            raise DecryptionFailed("the person's data key does not unwrap")
        key = new_data_key()
        await conn.execute(
            INSERT_KEY,
            root_id,
            stream_id,
            key.key_id,
            wrap_key(self._master, root_id, stream_id, key, self.alg),
            master_key_id(self._master),
        )
        self._keys[stream_id] = key

    async def shred(self, conn: asyncpg.Connection, root_id: UUID, stream_id: UUID) -> None:
        """Crypto-shredding: delete the stream's data key (in the caller's transaction)."""
        await conn.execute(DELETE_KEY, root_id, stream_id)
        self._keys[stream_id] = None

    def encrypt(self, stream_id: UUID, field_name: str, plaintext: bytes) -> dict[str, str]:
        key = self._keys.get(stream_id)
        if key is None:
            raise LookupError(f"no data key loaded for stream {stream_id}")
        return seal(key, stream_id, field_name, plaintext, self.alg)

    def decrypt(self, stream_id: UUID, field_name: str, sealed: Any) -> bytes | None:
        """The plaintext, or ``None`` when the key is gone or the value does not open."""
        key = self._keys.get(stream_id)
        if key is None:
            return None
        try:
            return open_sealed(key, stream_id, field_name, sealed)
        except DecryptionFailed:
            self.failed.add(stream_id)
            return None
