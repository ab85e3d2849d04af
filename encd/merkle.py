"""The log's Merkle tree: RFC 6962 / RFC 9162 over SHA-256, pure and offline.

Hashes (RFC 9162 §2.1.1, RFC 6962 §2.1)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256("")
    MTH({d0})       = leaf_hash(d0)
    MTH(D[n])       = node_hash(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of 2 < n

Verification follows the RFC 9162 algorithms step by step (the steps are
marked in the code):

- ``verify_inclusion``: §2.1.3.2, "Verifying an Inclusion Proof";
- ``verify_consistency``: §2.1.4.2, "Verifying Consistency between Two Tree
  Heads", with the cases the algorithm leaves open settled as follows:
  size1 > size2 fails; size1 == 0 fails (the empty tree has no root worth
  proving; a checkpoint of size 0 is trusted or not on its own); equal sizes
  need an empty proof and equal roots.

Every hash given to a verifier must be 32 bytes (else ``InvalidInput``);
a proof that does not verify raises ``VerificationError`` (an
``InclusionError`` or ``ConsistencyError`` carrying the evidence) whose
message says what was computed and what was expected.

Generation (§2.1.3.1 PATH and §2.1.4.1 PROOF/SUBPROOF) takes a function
``get_node(level, index)`` instead of a tree, so the ledger can serve proofs
from stored tiles with O(log n) look-ups. ``get_node(level, index)`` must
return the hash of the *perfect* subtree of ``2**level`` leaves that starts
at leaf ``index * 2**level``: level 0 is the leaf hashes themselves, and
``get_node(l + 1, i) == node_hash(get_node(l, 2i), get_node(l, 2i + 1))``.
Generation only asks for subtrees that are complete in the tree being
proved.  A subtree on the ragged right edge of a tree whose size is not a
power of two is not perfect; it is composed from the perfect subtrees that
make it up, exactly as MTH splits it (largest power of two on the left,
the rest on the right, recursively) -- see ``subtree_hash``.

``CompactRange`` keeps the right border of the tree (one perfect subtree
root per set bit of the size) so that appending a leaf yields the new root
and the new complete nodes to store, without reading the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass

from encd.errors import InvalidInput, VerificationError

HASH_SIZE = 32
MAX_SIZE = 2**64 - 1  # tree sizes and indexes are uint64 (RFC 9162 §4.4, tlog-checkpoint)
EMPTY_ROOT = hashlib.sha256(b"").digest()

GetNode = Callable[[int, int], bytes]
"""``get_node(level, index)``: hash of the perfect subtree of ``2**level``
leaves starting at leaf ``index * 2**level``."""

Memo = MutableMapping[tuple[int, int], bytes]
"""Hashes of ragged ranges ``(start, end)`` already composed.  A range's hash never
changes once its leaves exist, and every proof at one tree size composes the same
ragged right edge, so a server keeps one memo across proofs."""


# --- hashing -------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data), the hash of one log entry (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), an interior node (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def short(digest: bytes) -> str:
    """A hash for messages: the first 8 bytes in hex and an ellipsis."""
    return digest[:8].hex() + "…" if len(digest) > 8 else digest.hex()


def check_hash(value: bytes, field: str) -> bytes:
    """``value`` if it is a 32-byte SHA-256 hash; InvalidInput naming ``field`` otherwise."""
    if type(value) is bytes and len(value) == HASH_SIZE:  # the common case, first
        return value
    if not isinstance(value, bytes | bytearray):
        raise InvalidInput(field, f"hash must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise InvalidInput(field, f"hash must be {HASH_SIZE} bytes (SHA-256), got {len(value)}")
    return bytes(value)


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    return [check_hash(p, f"proof[{i}]") for i, p in enumerate(proof)]


def _check_size(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_SIZE:
        raise InvalidInput(field, f"must be between 0 and 2**64-1, got {value}")
    return value


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def root_naive(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over ``leaf_hashes`` by the recursive definition of RFC 6962 §2.1.

    The reference for differential tests: O(n) hashing, no shortcuts.
    """
    hashes = [check_hash(h, f"leaf_hashes[{i}]") for i, h in enumerate(leaf_hashes)]

    def mth(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return hashes[lo]
        k = _split(n)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    return mth(0, len(hashes))


# --- errors with evidence ------------------------------------------------------------------


class InclusionError(VerificationError):
    """An inclusion proof that does not verify; carries everything that was checked."""

    def __init__(
        self,
        message: str,
        *,
        leaf_hash: bytes,
        index: int,
        size: int,
        proof: Sequence[bytes],
        root: bytes,
    ) -> None:
        super().__init__(f"inclusion proof for leaf {index} of {size}: {message}")
        self.leaf_hash = leaf_hash
        self.index = index
        self.size = size
        self.proof = tuple(proof)
        self.root = root


class ConsistencyError(VerificationError):
    """A consistency proof that does not verify; carries both tree heads and the proof.

    This is the evidence an auditor writes out when a log may have forked.
    """

    def __init__(
        self,
        message: str,
        *,
        size1: int,
        size2: int,
        proof: Sequence[bytes],
        root1: bytes,
        root2: bytes,
    ) -> None:
        super().__init__(f"consistency proof from {size1} to {size2}: {message}")
        self.size1 = size1
        self.size2 = size2
        self.proof = tuple(proof)
        self.root1 = root1
        self.root2 = root2


# --- verification --------------------------------------------------------------------------


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes an inclusion proof for leaf ``index`` of ``size`` has (index < size)."""
    inner = (index ^ (size - 1)).bit_length()  # levels where the sibling is a full subtree
    border = (index >> inner).bit_count()  # levels on the right border above those
    return inner + border


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf_hash`` at ``index`` in a tree of ``size``.

    RFC 9162 §2.1.3.2 steps 1-4 and the size half of step 5; raises
    InclusionError when the proof does not fit the tree (index out of range,
    too many or too few hashes).  The caller compares the root.
    """
    leaf = check_hash(leaf_hash, "leaf hash")
    path = _check_proof(proof)
    _check_size(index, "leaf index")
    _check_size(size, "tree size")

    def fail(message: str) -> InclusionError:
        return InclusionError(message, leaf_hash=leaf, index=index, size=size, proof=path, root=b"")

    # (1) leaf_index must be less than tree_size.
    if index >= size:
        raise fail(f"leaf index {index} is not less than tree size {size}")
    expected = inclusion_proof_length(index, size)
    # (2) fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, size - 1
    # (3) r = hash.
    r = leaf
    # (4) for each p in inclusion_path:
    for p in path:
        # (4a) if sn is 0, the proof is too long.
        if sn == 0:
            raise fail(f"proof has {len(path)} hashes, expected {expected}")
        # (4b) a left-hand sibling (LSB(fn) set) or the last node of its level (fn == sn).
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # (4b.ii) skip the levels where this node has no right sibling.
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # (4c) up one level.
        fn >>= 1
        sn >>= 1
    # (5, size part) sn must be 0, else the proof is too short.
    if sn != 0:
        raise fail(f"proof has {len(path)} hashes, expected {expected}")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that the leaf ``leaf_hash`` is at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2.  Returns None; raises InvalidInput for hashes that are
    not 32 bytes and InclusionError (a VerificationError) when the proof fails.
    """
    expected_root = check_hash(root, "root")
    try:
        computed = root_from_inclusion(leaf_hash, index, size, proof)
    except InclusionError as exc:
        exc.root = expected_root
        raise
    # (5, root part) r must equal root_hash.
    if computed != expected_root:
        raise InclusionError(
            f"computed root {short(computed)}, expected {short(expected_root)}",
            leaf_hash=bytes(leaf_hash),
            index=index,
            size=size,
            proof=[bytes(p) for p in proof],
            root=expected_root,
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``.

    RFC 9162 §2.1.4.2.  Returns None; raises InvalidInput for hashes that
    are not 32 bytes and ConsistencyError (a VerificationError) otherwise.
    """
    first_hash = check_hash(root1, "root1")
    second_hash = check_hash(root2, "root2")
    path = _check_proof(proof)
    _check_size(size1, "size1")
    _check_size(size2, "size2")

    def fail(message: str) -> ConsistencyError:
        return ConsistencyError(
            message, size1=size1, size2=size2, proof=path, root1=first_hash, root2=second_hash
        )

    # (0) The cases §2.1.4.2 assumes away (it requires 0 < first < second).
    if size1 > size2:
        raise fail("size1 > size2")
    if size1 == 0:
        raise fail("size1 is 0: the empty tree has no root to prove consistent")
    if size1 == size2:
        if path:
            raise fail(f"equal sizes need an empty proof, got {len(path)} hashes")
        if first_hash != second_hash:
            raise fail(f"equal sizes but root1 {short(first_hash)} != root2 {short(second_hash)}")
        return
    # (1) An empty consistency_path fails.
    if not path:
        raise fail("proof is empty")
    # (2) If first is an exact power of 2, prepend first_hash.
    if size1 & (size1 - 1) == 0:
        path = [first_hash, *path]
    # (3) fn = first - 1, sn = second - 1.
    fn, sn = size1 - 1, size2 - 1
    # (4) While LSB(fn) is set, shift fn and sn right.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (5) fr = sr = consistency_path[0].
    fr = sr = path[0]
    # (6) For each subsequent c:
    for c in path[1:]:
        # (6a) if sn is 0, the proof is too long.
        if sn == 0:
            raise fail(f"proof has {len(proof)} hashes, more than the tree needs")
        # (6b) c is a left sibling in both trees, or the right edge of the first tree.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # (6b.ii) skip the levels where the first tree's node has no sibling.
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            # c lies only in the second tree, to the right.
            sr = node_hash(sr, c)
        # (6c) up one level.
        fn >>= 1
        sn >>= 1
    # (7) fr must be first_hash, sr second_hash, and sn 0.
    if sn != 0:
        raise fail(f"proof has {len(proof)} hashes, fewer than the tree needs")
    if fr != first_hash:
        raise fail(f"computed root1 {short(fr)}, expected {short(first_hash)}")
    if sr != second_hash:
        raise fail(f"computed root2 {short(sr)}, expected {short(second_hash)}")


# --- generation ----------------------------------------------------------------------------


def _fetch(get_node: GetNode, level: int, index: int) -> bytes:
    return check_hash(get_node(level, index), f"get_node({level}, {index})")


def subtree_hash(start: int, end: int, get_node: GetNode, memo: Memo | None = None) -> bytes:
    """MTH(D[start:end]) from perfect subtrees fetched with ``get_node``.

    A range of ``2**l`` leaves starting at a multiple of ``2**l`` is one
    perfect subtree: one call ``get_node(l, start >> l)``.  Any other range
    (the ragged right edge of a tree) is split as MTH splits it, the largest
    power of two on the left, and composed with ``node_hash``; the ranges
    proofs ask for need at most one perfect subtree per level.  ``memo``, if
    given, keeps the composed hashes of ragged ranges.
    """
    n = end - start
    if start < 0 or n <= 0:
        raise InvalidInput("range", f"need 0 <= start < end, got [{start}, {end})")
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return _fetch(get_node, level, start >> level)
    if memo is not None:
        known = memo.get((start, end))
        if known is not None:
            return known
    k = _split(n)
    value = node_hash(
        subtree_hash(start, start + k, get_node, memo),
        subtree_hash(start + k, end, get_node, memo),
    )
    if memo is not None:
        memo[(start, end)] = value
    return value


def tree_root(size: int, get_node: GetNode) -> bytes:
    """MTH of the first ``size`` leaves (``EMPTY_ROOT`` for size 0)."""
    _check_size(size, "tree size")
    return subtree_hash(0, size, get_node) if size else EMPTY_ROOT


def inclusion_proof(
    index: int, size: int, get_node: GetNode, memo: Memo | None = None
) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, ordered from the leaf's sibling up."""
    _check_size(index, "leaf index")
    _check_size(size, "tree size")
    if index >= size:
        raise InvalidInput("leaf index", f"{index} is not less than tree size {size}")
    # Level by level from the leaf: the sibling of the leaf's ancestor at each level.  A
    # left sibling is always a perfect subtree; a right one is perfect, or the ragged
    # right edge of the tree (composed by subtree_hash), or absent when the ancestor is
    # itself that edge.  The same hashes, in the same order, as the RFC's recursion.
    siblings: list[bytes] = []
    node, level, last = index, 0, size - 1
    while last >> level:
        sibling = node ^ 1
        if sibling < node:
            siblings.append(_fetch(get_node, level, sibling))
        else:
            first = sibling << level
            if first + (1 << level) <= size:
                siblings.append(_fetch(get_node, level, sibling))
            elif first < size:
                siblings.append(subtree_hash(first, size, get_node, memo))
        node >>= 1
        level += 1
    return siblings


def inclusion_proofs(
    first: int, end: int, size: int, get_node: GetNode, memo: Memo | None = None
) -> list[list[bytes]]:
    """``inclusion_proof(i, size, ...)`` for every leaf ``i`` in ``[first, end)``: a batch's
    receipts.  Neighbouring leaves share every sibling above the level where their paths
    meet, so each sibling is found once (about two per leaf, not one per level), and
    the proofs of leaves under one ancestor share the part from that ancestor up."""
    _check_size(first, "first leaf")
    _check_size(size, "tree size")
    if not first < end <= size:
        raise InvalidInput("leaf range", f"need first < end <= size, got {first}, {end}, {size}")
    # rows[level][a - (first >> level)]: the sibling of ancestor a at that level, as
    # inclusion_proof finds it (None where the ancestor is the ragged edge and has none)
    rows: list[list[bytes | None]] = []
    level, last = 0, size - 1
    while last >> level:
        row: list[bytes | None] = []
        for node in range(first >> level, ((end - 1) >> level) + 1):
            sibling = node ^ 1
            start = sibling << level
            if sibling < node or start + (1 << level) <= size:
                row.append(_fetch(get_node, level, sibling))
            elif start < size:
                row.append(subtree_hash(start, size, get_node, memo))
            else:
                row.append(None)
        rows.append(row)
        level += 1
    # from the top down: the proof of each ancestor's leaves from that ancestor's level up
    above: list[list[bytes]] = [[]]  # the (one) ancestor above the top level: nothing
    for level in range(len(rows) - 1, -1, -1):
        low, high = first >> level, (end - 1) >> level
        parent_low = low >> 1
        above = [
            above[(node >> 1) - parent_low]
            if (found := rows[level][node - low]) is None
            else [found, *above[(node >> 1) - parent_low]]
            for node in range(low, high + 1)
        ]
    return above


def consistency_proof(
    size1: int, size2: int, get_node: GetNode, memo: Memo | None = None
) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1 (SUBPROOF), ordered as the RFC orders it.

    Requires 0 < size1 <= size2; the proof for equal sizes is empty.
    """
    _check_size(size1, "size1")
    _check_size(size2, "size2")
    if not 0 < size1 <= size2:
        raise InvalidInput("size1", f"need 0 < size1 <= size2, got {size1} and {size2}")
    hashes: list[bytes] = []  # collected root-down, returned bottom-up
    start, end, whole = 0, size2, True  # ``whole``: the SUBPROOF flag b
    while True:
        n, m = end - start, size1 - start
        if m == n:
            if not whole:
                hashes.append(subtree_hash(start, end, get_node, memo))
            break
        k = _split(n)
        if m <= k:
            hashes.append(subtree_hash(start + k, end, get_node, memo))
            end = start + k
        else:
            hashes.append(subtree_hash(start, start + k, get_node, memo))
            start += k
            whole = False
    hashes.reverse()
    return hashes


# --- appending -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A complete subtree: ``hash`` of the ``2**level`` leaves from ``index * 2**level``."""

    level: int
    index: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class CompactRange:
    """The right border of a tree of ``size`` leaves: enough to append and to compute the root.

    ``hashes`` are the roots of the perfect subtrees that make up the tree,
    one per set bit of ``size``, left (largest) to right (smallest).
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_size(self.size, "size")
        if len(self.hashes) != self.size.bit_count():
            raise InvalidInput(
                "hashes",
                f"a tree of {self.size} leaves has {self.size.bit_count()} border hashes,"
                f" got {len(self.hashes)}",
            )
        for i, h in enumerate(self.hashes):
            check_hash(h, f"hashes[{i}]")

    @staticmethod
    def border(size: int) -> list[tuple[int, int]]:
        """The (level, index) of the perfect subtrees that make up a tree of ``size`` leaves,
        largest first: the nodes ``from_nodes`` reads."""
        _check_size(size, "size")
        out = []
        start = 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> CompactRange:
        """The border of the tree of ``size`` leaves, read with ``get_node``."""
        return cls(size, tuple(_fetch(get_node, lv, ix) for lv, ix in cls.border(size)))

    def append(self, leaf: bytes) -> tuple[CompactRange, list[Node]]:
        """Append one leaf hash; returns the new range and the nodes that became complete.

        The nodes are the leaf itself (level 0) and every parent it completes,
        bottom-up: exactly what ``get_node`` must return from then on.
        """
        return self.extend((check_hash(leaf, "leaf hash"),))

    def extend(self, leaves: Iterable[bytes]) -> tuple[CompactRange, list[Node]]:
        """Append several leaf hashes in order: ``append`` one at a time, in one step."""
        border = list(self.hashes)
        size = self.size
        created: list[Node] = []
        for i, leaf in enumerate(leaves):
            h = check_hash(leaf, f"leaves[{i}]")
            if size == MAX_SIZE:
                raise InvalidInput("size", "the tree is full (2**64-1 leaves)")
            index, level = size, 0
            created.append(Node(0, index, h))
            while index & 1:
                h = node_hash(border.pop(), h)
                index >>= 1
                level += 1
                created.append(Node(level, index, h))
            border.append(h)
            size += 1
        return CompactRange(size, tuple(border)), created

    def root(self) -> bytes:
        """MTH of the tree: the border hashes folded right to left."""
        if not self.hashes:
            return EMPTY_ROOT
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h
