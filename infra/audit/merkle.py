"""The Merkle tree a checkpoint signs: one leaf per chain head of a subtree, in path order.

Encoding (fixed: signed checkpoints are kept for years and re-checked offline):

* a head is ``{"code": str, "hash": hex, "node_id": str, "seq": int}``; its canonical bytes
  are the JSON object with keys sorted and no whitespace (msgspec ``order="sorted"``,
  UTF-8, non-ASCII not escaped), hashes as lowercase hex, the node id in its canonical
  8-4-4-4-12 lowercase form;
* ``leaf = sha256(0x00 || canonical(head))``;
* ``inner = sha256(0x01 || left || right)``; a level with an odd count promotes its last
  node unchanged to the next level;
* the root of no leaves is ``sha256(b"")`` (a subtree always has at least its own node).

The 0x00/0x01 prefixes keep a leaf from ever being read as an inner node. An inclusion path
lists, from the leaf up, the sibling hashes and on which side each sits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec

Hash = Callable[[bytes], bytes]

_LEAF = b"\x00"
_INNER = b"\x01"
_encoder = msgspec.json.Encoder(order="sorted")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Head(msgspec.Struct, frozen=True):
    """One node's chain head as a checkpoint lists it (and as its Merkle leaf encodes it)."""

    node_id: str
    code: str
    seq: int
    hash: str  # lowercase hex


class Step(msgspec.Struct, frozen=True):
    """One level of an inclusion path: the sibling's hash and whether it sits left or right."""

    side: Literal["left", "right"]
    hash: str  # lowercase hex


def canonical_head(head: Head | dict[str, Any]) -> bytes:
    if isinstance(head, Head):
        head = msgspec.structs.asdict(head)
    return _encoder.encode(
        {
            "code": head["code"],
            "hash": head["hash"],
            "node_id": head["node_id"],
            "seq": head["seq"],
        }
    )


def leaf_hash(head: Head | dict[str, Any], h: Hash = sha256) -> bytes:
    return h(_LEAF + canonical_head(head))


def _inner(left: bytes, right: bytes, h: Hash) -> bytes:
    return h(_INNER + left + right)


def _next_level(level: Sequence[bytes], h: Hash) -> list[bytes]:
    up = [_inner(level[i], level[i + 1], h) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        up.append(level[-1])  # odd node promoted unchanged
    return up


def root_of_leaves(leaves: Sequence[bytes], h: Hash = sha256) -> bytes:
    if not leaves:
        return h(b"")
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level, h)
    return level[0]


def merkle_root(heads: Sequence[Head | dict[str, Any]], h: Hash = sha256) -> bytes:
    return root_of_leaves([leaf_hash(x, h) for x in heads], h)


def inclusion_path(leaves: Sequence[bytes], index: int, h: Hash = sha256) -> list[Step]:
    """The siblings from leaf ``index`` up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of {len(leaves)}")
    path: list[Step] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            side: Literal["left", "right"] = "left" if sibling < index else "right"
            path.append(Step(side=side, hash=level[sibling].hex()))
        # else: promoted without a sibling, no step at this level
        level = _next_level(level, h)
        index //= 2
    return path


def root_from_path(leaf: bytes, path: Sequence[Step | dict[str, Any]], h: Hash = sha256) -> bytes:
    """Fold an inclusion path onto a leaf hash; equals the root when the leaf is included."""
    acc = leaf
    for step in path:
        side, sibling = (
            (step.side, step.hash) if isinstance(step, Step) else (step["side"], step["hash"])
        )
        other = bytes.fromhex(sibling)
        if side == "left":
            acc = _inner(other, acc, h)
        elif side == "right":
            acc = _inner(acc, other, h)
        else:
            raise ValueError(f"a step's side is 'left' or 'right', not {side!r}")
    return acc
