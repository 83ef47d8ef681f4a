"""The per-root transparency tree (RFC 6962 / RFC 9162 Merkle tree) and its proofs.

Each root tenant's events, in position order, are the leaves of one append-only tree:

* leaf ``i`` = H(0x00 || hash of the i-th event)  (the event's chain link, 32 bytes);
* node = H(0x01 || left || right); MTH splits a range of n > 1 leaves at the largest power
  of two below n, so the tree of a prefix of the log is a subtree-wise prefix of the tree
  of the whole log, which is what makes consistency proofs possible;
* the root of the empty tree is H(b"").

Every complete subtree (2^level leaves starting at index * 2^level) is fixed for ever once
its last leaf is appended, so the server stores those hashes and answers any proof, for any
earlier tree size, with O(log n) of them (``range_nodes``). The *frontier* (compact range of
[0, n)) is the list of complete subtrees of the binary decomposition of n, largest first:
appending a leaf touches only it (amortised O(1), at most log n merges).

Proof layouts and verification follow RFC 9162 sections 2.1.3 and 2.1.4 exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from civic_verify.hashing import Hash

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

#: (level, index): the complete subtree over leaves [index << level, (index + 1) << level)
NodeId = tuple[int, int]
#: a half-open range of leaf indices
Range = tuple[int, int]


def leaf_hash(h: Hash, data: bytes) -> bytes:
    return h(LEAF_PREFIX + data)


def node_hash(h: Hash, left: bytes, right: bytes) -> bytes:
    return h(NODE_PREFIX + left + right)


def empty_root(h: Hash) -> bytes:
    return h(b"")


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The compact range [0, size): complete subtrees (level, hash), largest first."""

    __slots__ = ("h", "nodes", "size")

    def __init__(self, h: Hash, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        if len(levels) != len(hashes):
            raise ValueError(f"a tree of {size} leaves has {len(levels)} frontier hashes")
        self.h = h
        self.size = size
        self.nodes: list[tuple[int, bytes]] = list(zip(levels, hashes, strict=True))

    def push(self, level: int, start: int, value: bytes) -> list[tuple[int, int, bytes]]:
        """Append the complete subtree of 2^level leaves starting at leaf ``start`` (which must
        be the current size, aligned to 2^level). Returns the complete subtrees this completes
        (level, index, hash), the pushed one first."""
        if start != self.size or start & ((1 << level) - 1):
            raise ValueError(f"a subtree of level {level} cannot start at leaf {start}")
        if self.nodes and self.nodes[-1][0] < level:
            raise ValueError(f"a subtree of level {level} cannot follow a smaller one")
        made = [(level, start >> level, value)]
        nodes, h = self.nodes, self.h
        nodes.append((level, value))
        self.size += 1 << level
        while len(nodes) > 1 and nodes[-1][0] == nodes[-2][0]:
            lvl, right = nodes.pop()
            _, left = nodes.pop()
            merged = node_hash(h, left, right)
            nodes.append((lvl + 1, merged))
            made.append((lvl + 1, ((self.size - 1) >> (lvl + 1)), merged))
        return made

    def push_leaf(self, data: bytes) -> list[tuple[int, int, bytes]]:
        return self.push(0, self.size, leaf_hash(self.h, data))

    def root(self) -> bytes:
        if not self.nodes:
            return empty_root(self.h)
        acc = self.nodes[-1][1]
        for _, value in reversed(self.nodes[:-1]):
            acc = node_hash(self.h, value, acc)
        return acc

    def hashes(self) -> list[bytes]:
        return [value for _, value in self.nodes]


class RunBuilder:
    """Leaf hashes of a run [start, end) compacted into aligned complete subtrees, left to
    right (a stack that merges two equal neighbours when the pair is itself aligned): what
    an evidence bundle carries for leaves whose content it leaves out."""

    __slots__ = ("end", "h", "stack", "start")

    def __init__(self, h: Hash, start: int) -> None:
        self.h = h
        self.start = self.end = start
        self.stack: list[tuple[int, int, bytes]] = []  # (level, first leaf, hash)

    def add(self, leaf: bytes) -> None:
        stack = self.stack
        stack.append((0, self.end, leaf))
        self.end += 1
        while len(stack) > 1:
            (l1, s1, left), (l2, _, right) = stack[-2], stack[-1]
            if l1 != l2 or s1 & ((2 << l1) - 1):
                break
            stack[-2:] = [(l1 + 1, s1, node_hash(self.h, left, right))]

    def subtrees(self) -> list[tuple[int, bytes]]:
        return [(level, value) for level, _, value in self.stack]


def aligned(lo: int, hi: int) -> list[NodeId]:
    """The complete subtrees, left to right, that MTH of leaves [lo, hi) is built from, for
    the ranges proofs use (``lo`` aligned to the largest power of two not above hi - lo)."""
    out: list[NodeId] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def fold(h: Hash, parts: Sequence[bytes]) -> bytes:
    """MTH of a range from its ``aligned`` subtrees' hashes."""
    acc = parts[-1]
    for value in reversed(parts[:-1]):
        acc = node_hash(h, value, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose MTH form the inclusion proof of leaf ``index`` (RFC 9162 PATH)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    out: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()  # PATH lists the sibling nearest the leaf first
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose MTH form the consistency proof from ``first`` to ``second`` leaves
    (RFC 9162 SUBPROOF); empty when first is 0 or equal to second."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second} leaves")
    if first in (0, second):
        return []
    out: list[Range] = []
    m, lo, hi, complete = first, 0, second, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            m -= k
            lo += k
            complete = False
    out.reverse()
    return out


def range_nodes(ranges: Iterable[Range]) -> list[NodeId]:
    """Every stored subtree the ranges need (deduplicated, in first-use order)."""
    seen: dict[NodeId, None] = {}
    for lo, hi in ranges:
        for node in aligned(lo, hi):
            seen.setdefault(node, None)
    return list(seen)


def resolve(h: Hash, ranges: Sequence[Range], get: Callable[[NodeId], bytes]) -> list[bytes]:
    """The MTH of each range from stored subtree hashes (``get`` raises KeyError if absent)."""
    return [fold(h, [get(node) for node in aligned(lo, hi)]) for lo, hi in ranges]


def root_from_nodes(h: Hash, size: int, get: Callable[[NodeId], bytes]) -> bytes:
    return empty_root(h) if size == 0 else resolve(h, [(0, size)], get)[0]


def verify_inclusion(
    h: Hash, index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: ``leaf`` (a leaf hash) is leaf ``index`` of the tree with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(h, p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(h, r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    h: Hash,
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """RFC 9162 2.1.4.2: the tree of ``second`` leaves extends the tree of ``first``."""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == empty_root(h)
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is itself a node of the new
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(h, c, fr)
            sr = node_hash(h, c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(h, sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root
