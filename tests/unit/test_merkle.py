"""The Merkle tree of checkpoints: the fixed encoding, roots, and inclusion paths."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from infra.audit.merkle import (
    Head,
    canonical_head,
    inclusion_path,
    leaf_hash,
    merkle_root,
    root_from_path,
    root_of_leaves,
)


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def heads(n: int) -> list[Head]:
    return [
        Head(
            node_id=str(uuid.UUID(int=i + 1)),
            code=f"3301060{i:05d}",
            seq=i + 1,
            hash=H(bytes([i])).hex(),
        )
        for i in range(n)
    ]


def test_leaf_encoding_is_fixed():
    head = Head(
        node_id="00000000-0000-0000-0000-000000000001",
        code="330106000000",
        seq=7,
        hash="ab" * 32,
    )
    expected = (
        b'{"code":"330106000000","hash":"' + b"ab" * 32 + b'","node_id":'
        b'"00000000-0000-0000-0000-000000000001","seq":7}'
    )
    assert canonical_head(head) == expected
    assert (
        canonical_head({"seq": 7, "node_id": head.node_id, "hash": head.hash, "code": head.code})
        == expected
    )
    assert leaf_hash(head) == H(b"\x00" + expected)


def test_small_trees_by_hand():
    a, b, c = (leaf_hash(h) for h in heads(3))
    assert root_of_leaves([]) == H(b"")
    assert root_of_leaves([a]) == a
    assert root_of_leaves([a, b]) == H(b"\x01" + a + b)
    # odd node promoted unchanged
    assert root_of_leaves([a, b, c]) == H(b"\x01" + H(b"\x01" + a + b) + c)
    assert merkle_root(heads(3)) == root_of_leaves([a, b, c])


def test_chinese_codes_and_order_matter():
    hs = heads(4)
    renamed = [*hs[:3], Head(node_id=hs[3].node_id, code="网格-1", seq=hs[3].seq, hash=hs[3].hash)]
    assert merkle_root(renamed) != merkle_root(hs)
    assert merkle_root(list(reversed(hs))) != merkle_root(hs)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_every_leaf_has_a_path_to_the_root(n):
    hs = heads(n)
    leaves = [leaf_hash(h) for h in hs]
    root = root_of_leaves(leaves)
    for i, leaf in enumerate(leaves):
        path = inclusion_path(leaves, i)
        assert len(path) <= max(1, (n - 1).bit_length())
        assert root_from_path(leaf, path) == root
        # the path of one leaf does not prove another
        if n > 1:
            other = leaves[(i + 1) % n]
            assert root_from_path(other, path) != root
        # a path given as plain JSON-like dicts works the same
        assert root_from_path(leaf, [{"side": s.side, "hash": s.hash} for s in path]) == root


def test_a_changed_head_changes_the_root_and_breaks_its_path():
    hs = heads(6)
    leaves = [leaf_hash(h) for h in hs]
    path = inclusion_path(leaves, 2)
    forged = Head(node_id=hs[2].node_id, code=hs[2].code, seq=hs[2].seq + 1, hash=hs[2].hash)
    assert merkle_root([*hs[:2], forged, *hs[3:]]) != merkle_root(hs)
    assert root_from_path(leaf_hash(forged), path) != merkle_root(hs)


def test_bad_inputs():
    with pytest.raises(IndexError):
        inclusion_path([leaf_hash(h) for h in heads(2)], 2)
    with pytest.raises(ValueError):
        root_from_path(b"x" * 32, [{"side": "up", "hash": "00" * 32}])
