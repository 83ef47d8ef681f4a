"""The per-root tree and its proofs against a direct RFC 6962 implementation."""

from __future__ import annotations

import hashlib

import pytest

from civic_verify.hashing import sha256, sm3
from civic_verify.tlog import (
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    range_nodes,
    resolve,
    root_from_nodes,
    verify_consistency,
    verify_inclusion,
)

H = sha256


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally."""
    if not leaves:
        return H(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(H, mth(leaves[:k]), mth(leaves[k:]))


def build(n: int) -> tuple[list[bytes], dict[tuple[int, int], bytes], Frontier]:
    leaves = [leaf_hash(H, hashlib.sha256(str(i).encode()).digest()) for i in range(n)]
    stored: dict[tuple[int, int], bytes] = {}
    frontier = Frontier(H)
    for i, leaf in enumerate(leaves):
        for level, index, value in frontier.push(0, i, leaf):
            stored[(level, index)] = value
    return leaves, stored, frontier


def test_frontier_root_is_mth_for_every_size() -> None:
    leaves, stored, _ = build(70)
    for n in range(71):
        assert root_from_nodes(H, n, stored.__getitem__) == mth(leaves[:n])
        f = Frontier(H)
        for leaf in leaves[:n]:
            f.push(0, f.size, leaf)
        assert f.root() == mth(leaves[:n])
        # a frontier restored from its stored hashes continues the same tree
        again = Frontier(H, f.size, f.hashes())
        assert again.root() == f.root()


def test_rfc6962_known_vector() -> None:
    # The empty tree, and a one-leaf tree over the empty string, from the RFC 6962 test data.
    assert H(b"").hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(H, b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_inclusion_and_consistency_proofs_verify_and_detect_rewrites() -> None:
    leaves, stored, _ = build(40)
    for n in range(1, 41):
        root = mth(leaves[:n])
        for i in range(n):
            proof = resolve(H, inclusion_ranges(i, n), stored.__getitem__)
            assert verify_inclusion(H, i, n, leaves[i], proof, root)
            assert not verify_inclusion(H, i, n, leaves[(i + 1) % n], proof, root) or n == 1
        for m in range(0, n + 1):
            proof = resolve(H, consistency_ranges(m, n), stored.__getitem__)
            assert verify_consistency(H, m, n, mth(leaves[:m]), root, proof)
            if 0 < m < n:
                # a rewritten history: one old leaf changed, the new tree built over it
                forged = list(leaves)
                forged[m - 1] = leaf_hash(H, b"rewritten")
                assert not verify_consistency(H, m, n, mth(leaves[:m]), mth(forged[:n]), proof)
                assert not verify_consistency(H, m, n, mth(forged[:m]), root, proof)


def test_proof_size_grows_with_log_n() -> None:
    for n in (10_000, 1_000_000, 1 << 40):
        assert len(inclusion_ranges(n // 3, n)) <= n.bit_length()
        assert len(consistency_ranges(n // 3, n)) <= 2 * n.bit_length()
        # and the stored subtrees a proof reads stay O(log^2 n)
        assert len(range_nodes(consistency_ranges(n // 3, n))) <= n.bit_length() ** 2


def test_frontier_refuses_a_misaligned_subtree() -> None:
    f = Frontier(H)
    f.push(0, 0, leaf_hash(H, b"a"))
    with pytest.raises(ValueError):
        f.push(1, 1, b"x" * 32)  # a 2-leaf subtree cannot start at leaf 1
    with pytest.raises(ValueError):
        f.push(0, 3, b"x" * 32)  # leaves 1-2 are missing


def test_sm3_is_the_gb_t_32905_vector() -> None:
    assert sm3(b"abc").hex() == ("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
    assert sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_a_compacted_run_continues_the_tree() -> None:
    from civic_verify.tlog import RunBuilder

    leaves, _, full = build(53)
    for start in range(0, 50, 7):
        for end in range(start, 54, 5):
            f = Frontier(H)
            for leaf in leaves[:start]:
                f.push(0, f.size, leaf)
            run = RunBuilder(H, start)
            for leaf in leaves[start:end]:
                run.add(leaf)
            at = start
            for level, value in run.subtrees():
                f.push(level, at, value)
                at += 1 << level
            assert at == end
            for leaf in leaves[end:]:
                f.push(0, f.size, leaf)
            assert f.root() == full.root()
            assert len(run.subtrees()) <= 2 * max(1, (end - start).bit_length())
