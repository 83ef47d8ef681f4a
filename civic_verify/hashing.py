"""The hash profiles: SHA-256 (standard) and SM3 (国密, GB/T 32905), by the name records carry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes

Hash = Callable[[bytes], bytes]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


#: hash algorithm name (as checkpoints, trees and bundles record it) → function
HASHES: dict[str, Hash] = {"sha256": sha256, "sm3": sm3}


def by_name(name: str) -> Hash:
    try:
        return HASHES[name]
    except KeyError:
        raise ValueError(f"unknown hash algorithm {name!r}") from None


def link(h: Hash, prev: bytes, seq: int, position: int, digest: bytes) -> bytes:
    """A chain link: H(prev || int8_be(seq) || int8_be(position) || digest)."""
    return h(
        b"".join(
            (
                prev,
                seq.to_bytes(8, "big", signed=True),
                position.to_bytes(8, "big", signed=True),
                digest,
            )
        )
    )
