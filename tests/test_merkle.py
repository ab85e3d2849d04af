"""encd.merkle against the recursive definitions of RFC 6962 / RFC 9162, for every small tree."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encd.errors import InvalidInput, VerificationError
from encd.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyError,
    InclusionError,
    Node,
    consistency_proof,
    inclusion_proof,
    inclusion_proof_length,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_naive,
    subtree_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

MAX_LEAVES = 1024
LEAVES = [leaf_hash(b"entry %d" % i) for i in range(MAX_LEAVES)]


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree of the tree over ``leaves``, level by level."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


LEVELS = _levels(LEAVES)


def nodes_of(size: int) -> Callable[[int, int], bytes]:
    """get_node for the tree of ``size`` leaves; fails if asked for an incomplete subtree."""

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"node ({level}, {index}) is not complete in {size}"
        return LEVELS[level][index]

    return get_node


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path_naive(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, written from the definition."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path_naive(m, d[:k]), root_naive(d[k:])]
    return [*path_naive(m - k, d[k:]), root_naive(d[:k])]


def subproof_naive(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1, written from the definition."""
    n = len(d)
    if m == n:
        return [] if b else [root_naive(d)]
    k = _k(n)
    if m <= k:
        return [*subproof_naive(m, d[:k], b), root_naive(d[k:])]
    return [*subproof_naive(m - k, d[k:], False), root_naive(d[:k])]


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


ROOTS = [root_naive(LEAVES[:n]) for n in range(301)]


# --- hashing and the reference -------------------------------------------------------------


def test_hashes_use_rfc_6962_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == root_naive([])


def test_root_naive_small_trees_by_hand() -> None:
    a, b, c = LEAVES[:3]
    assert root_naive([a]) == a
    assert root_naive([a, b]) == node_hash(a, b)
    assert root_naive([a, b, c]) == node_hash(node_hash(a, b), c)


def test_root_naive_refuses_short_hashes() -> None:
    with pytest.raises(InvalidInput) as info:
        root_naive([LEAVES[0], b"x" * 31])
    assert info.value.message == "leaf_hashes[1]: hash must be 32 bytes (SHA-256), got 31"


# --- incremental tree and generation against the reference ---------------------------------


def test_compact_range_matches_naive_root_for_every_size() -> None:
    cr = CompactRange()
    assert cr.root() == EMPTY_ROOT
    for n in range(300):
        cr, created = cr.append(LEAVES[n])
        assert cr.size == n + 1
        assert cr.root() == ROOTS[n + 1], n + 1
        # the nodes it reports complete are exactly the perfect subtrees ending at leaf n
        expected = [
            Node(level, (n + 1 >> level) - 1, LEVELS[level][(n + 1 >> level) - 1])
            for level in range(len(LEVELS))
            if (n + 1) % (1 << level) == 0
        ]
        assert created == expected
        assert CompactRange.from_nodes(n + 1, nodes_of(n + 1)) == cr


def test_extend_is_append_one_leaf_at_a_time() -> None:
    # a batch's leaves go in with one extend: the same range and the same nodes, in order
    for start, count in [(0, 0), (0, 1), (0, 300), (1, 2), (7, 9), (63, 66), (255, 45)]:
        one_by_one, expected = CompactRange.from_nodes(start, nodes_of(start)), []
        for leaf in LEAVES[start : start + count]:
            one_by_one, created = one_by_one.append(leaf)
            expected += created
        extended, nodes = CompactRange.from_nodes(start, nodes_of(start)).extend(
            LEAVES[start : start + count]
        )
        assert (extended, nodes) == (one_by_one, expected), (start, count)
        assert extended.root() == ROOTS[start + count]
    with pytest.raises(InvalidInput, match=r"leaves\[1\]: hash must be 32 bytes"):
        CompactRange().extend([LEAVES[0], b"x" * 31])


def test_tree_root_from_nodes_matches_naive_for_every_size() -> None:
    for n in range(301):
        assert tree_root(n, nodes_of(n)) == ROOTS[n], n


def test_subtree_hash_composes_ragged_edges() -> None:
    for start in range(0, 40):
        for end in range(start + 1, 41):
            assert subtree_hash(start, end, nodes_of(end)) == root_naive(LEAVES[start:end])


def test_proofs_with_one_memo_across_sizes_equal_proofs_without() -> None:
    # A server keeps one memo of ragged ranges for every proof it serves, whatever the size.
    memo: dict[tuple[int, int], bytes] = {}
    for size in [*range(1, 70), 255, 256, 257, 1000, 1023, 69, 3, 1000]:
        for index in {0, size // 3, size - 1}:
            assert inclusion_proof(index, size, nodes_of(size), memo) == inclusion_proof(
                index, size, nodes_of(size)
            )
        for size1 in {1, size // 2 or 1, size - 1 or 1, size}:
            assert consistency_proof(size1, size, nodes_of(size), memo) == consistency_proof(
                size1, size, nodes_of(size)
            )
    assert memo, "ragged ranges were composed and kept"
    for (start, end), value in memo.items():
        assert value == root_naive(LEAVES[start:end])


def test_compact_range_refuses_wrong_border() -> None:
    with pytest.raises(InvalidInput) as info:
        CompactRange(3, (LEAVES[0],))
    assert info.value.message == "hashes: a tree of 3 leaves has 2 border hashes, got 1"


def test_inclusion_proofs_for_every_leaf_match_the_definition() -> None:
    for n in range(1, 65):
        for i in range(n):
            proof = inclusion_proof(i, n, nodes_of(n))
            assert proof == path_naive(i, LEAVES[:n]), (i, n)
            assert len(proof) == inclusion_proof_length(i, n)
            verify_inclusion(LEAVES[i], i, n, proof, ROOTS[n])
            assert root_from_inclusion(LEAVES[i], i, n, proof) == ROOTS[n]


def test_inclusion_proofs_in_larger_trees() -> None:
    for n in range(65, 301):
        for i in {0, 1, n // 3, n // 2, n - 2, n - 1}:
            proof = inclusion_proof(i, n, nodes_of(n))
            assert proof == path_naive(i, LEAVES[:n]), (i, n)
            verify_inclusion(LEAVES[i], i, n, proof, ROOTS[n])


def test_a_batch_of_inclusion_proofs_equals_one_proof_at_a_time() -> None:
    for n in range(1, 41):
        for first in range(n):
            for end in range(first + 1, n + 1):
                expected = [inclusion_proof(i, n, nodes_of(n)) for i in range(first, end)]
                assert inclusion_proofs(first, end, n, nodes_of(n)) == expected, (first, end, n)
    memo: dict[tuple[int, int], bytes] = {}
    for n, first, end in [(1000, 488, 1000), (1024, 512, 1024), (1023, 1000, 1023), (300, 0, 1)]:
        root = root_naive(LEAVES[:n])
        proofs = inclusion_proofs(first, end, n, nodes_of(n), memo)
        for i, proof in zip(range(first, end), proofs, strict=True):
            assert proof == inclusion_proof(i, n, nodes_of(n)), (i, n)
            verify_inclusion(LEAVES[i], i, n, proof, root)


def test_a_batch_of_inclusion_proofs_refuses_a_wrong_range() -> None:
    for first, end, size in [(3, 3, 5), (4, 2, 5), (0, 6, 5), (-1, 2, 5)]:
        with pytest.raises(InvalidInput):
            inclusion_proofs(first, end, size, nodes_of(5))


def test_consistency_proofs_for_every_pair_match_the_definition() -> None:
    for n in range(1, 65):
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, nodes_of(n))
            assert proof == subproof_naive(m, LEAVES[:n], True), (m, n)
            verify_consistency(m, n, proof, ROOTS[m], ROOTS[n])


def test_consistency_proofs_in_larger_trees() -> None:
    for n in range(65, 301, 7):
        for m in {1, 2, 63, 64, 65, n // 2, n - 1, n}:
            if m <= n:
                proof = consistency_proof(m, n, nodes_of(n))
                assert proof == subproof_naive(m, LEAVES[:n], True), (m, n)
                verify_consistency(m, n, proof, ROOTS[m], ROOTS[n])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_proofs_in_trees_up_to_1024(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, MAX_LEAVES), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    m = data.draw(st.integers(1, n), label="size1")
    root_n = tree_root(n, nodes_of(n))
    verify_inclusion(LEAVES[i], i, n, inclusion_proof(i, n, nodes_of(n)), root_n)
    verify_consistency(
        m, n, consistency_proof(m, n, nodes_of(n)), tree_root(m, nodes_of(m)), root_n
    )


def test_generation_refuses_impossible_requests() -> None:
    with pytest.raises(InvalidInput) as info:
        inclusion_proof(5, 5, nodes_of(5))
    assert info.value.message == "leaf index: 5 is not less than tree size 5"
    with pytest.raises(InvalidInput) as info:
        consistency_proof(0, 5, nodes_of(5))
    assert info.value.message == "size1: need 0 < size1 <= size2, got 0 and 5"
    with pytest.raises(InvalidInput) as info:
        inclusion_proof(0, 2, lambda level, index: b"short")
    assert info.value.message == "get_node(0, 1): hash must be 32 bytes (SHA-256), got 5"


# --- tampering -----------------------------------------------------------------------------


def test_tampered_inclusion_proofs_fail() -> None:
    for n in range(1, 21):
        for i in range(n):
            proof = inclusion_proof(i, n, nodes_of(n))
            leaf, root = LEAVES[i], ROOTS[n]
            for bit in range(0, 256, 37):  # a spread of bits in every hash
                with pytest.raises(VerificationError):
                    verify_inclusion(flip(leaf, bit), i, n, proof, root)
                with pytest.raises(VerificationError):
                    verify_inclusion(leaf, i, n, proof, flip(root, bit))
                for j in range(len(proof)):
                    bad = [*proof[:j], flip(proof[j], bit), *proof[j + 1 :]]
                    with pytest.raises(VerificationError):
                        verify_inclusion(leaf, i, n, bad, root)
            for other in range(n + 2):
                if other != i:
                    with pytest.raises(VerificationError):
                        verify_inclusion(leaf, other, n, proof, root)
            # A changed size fails against the root of that size (a checkpoint binds the two).
            for other in range(1, 24):
                if other != n:
                    with pytest.raises(VerificationError):
                        verify_inclusion(leaf, i, other, proof, ROOTS[other])
            # Dropping or adding a hash fails too.
            if proof:
                with pytest.raises(VerificationError):
                    verify_inclusion(leaf, i, n, proof[:-1], root)
            with pytest.raises(VerificationError):
                verify_inclusion(leaf, i, n, [*proof, root], root)


def test_tampered_consistency_proofs_fail() -> None:
    for n in range(1, 21):
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, nodes_of(n))
            r1, r2 = ROOTS[m], ROOTS[n]
            for bit in range(0, 256, 37):
                with pytest.raises(VerificationError):
                    verify_consistency(m, n, proof, flip(r1, bit), r2)
                with pytest.raises(VerificationError):
                    verify_consistency(m, n, proof, r1, flip(r2, bit))
                for j in range(len(proof)):
                    bad = [*proof[:j], flip(proof[j], bit), *proof[j + 1 :]]
                    with pytest.raises(VerificationError):
                        verify_consistency(m, n, bad, r1, r2)
            for m2 in range(0, 23):
                for n2 in range(0, 23):
                    # an empty proof (equal sizes) is rightly valid for every pair of equal sizes
                    if (m2, n2) != (m, n) and not (m2 == n2 > 0 and not proof):
                        with pytest.raises(VerificationError):
                            verify_consistency(m2, n2, proof, ROOTS[m2], ROOTS[n2])
            if proof:
                with pytest.raises(VerificationError):
                    verify_consistency(m, n, proof[:-1], r1, r2)
            with pytest.raises(VerificationError):
                verify_consistency(m, n, [*proof, r2], r1, r2)


# --- messages ------------------------------------------------------------------------------


def test_inclusion_messages() -> None:
    proof = inclusion_proof(5, 8, nodes_of(8))
    wrong_root = ROOTS[7]
    with pytest.raises(InclusionError) as info:
        verify_inclusion(LEAVES[5], 5, 8, proof, wrong_root)
    assert info.value.message == (
        f"inclusion proof for leaf 5 of 8: computed root {ROOTS[8][:8].hex()}…,"
        f" expected {wrong_root[:8].hex()}…"
    )
    # the error carries its evidence
    assert info.value.root == wrong_root
    assert info.value.proof == tuple(proof)
    assert (info.value.index, info.value.size, info.value.leaf_hash) == (5, 8, LEAVES[5])

    with pytest.raises(InclusionError) as info:
        verify_inclusion(LEAVES[8], 8, 8, proof, ROOTS[8])
    assert info.value.message == (
        "inclusion proof for leaf 8 of 8: leaf index 8 is not less than tree size 8"
    )
    with pytest.raises(InclusionError) as info:
        verify_inclusion(LEAVES[5], 5, 8, [*proof, proof[0]], ROOTS[8])
    assert info.value.message == "inclusion proof for leaf 5 of 8: proof has 4 hashes, expected 3"
    assert info.value.root == ROOTS[8]
    with pytest.raises(InclusionError) as info:
        verify_inclusion(LEAVES[5], 5, 8, proof[:2], ROOTS[8])
    assert info.value.message == "inclusion proof for leaf 5 of 8: proof has 2 hashes, expected 3"


def test_consistency_messages() -> None:
    proof = consistency_proof(3, 8, nodes_of(8))

    def message(*args: object) -> str:
        with pytest.raises(ConsistencyError) as info:
            verify_consistency(*args)  # type: ignore[arg-type]
        return info.value.message

    assert message(4, 3, [], ROOTS[4], ROOTS[3]) == "consistency proof from 4 to 3: size1 > size2"
    assert message(0, 3, [], EMPTY_ROOT, ROOTS[3]) == (
        "consistency proof from 0 to 3: size1 is 0: the empty tree has no root to prove consistent"
    )
    assert message(3, 3, proof, ROOTS[3], ROOTS[3]) == (
        "consistency proof from 3 to 3: equal sizes need an empty proof, got 4 hashes"
    )
    assert message(3, 3, [], ROOTS[3], ROOTS[4]) == (
        f"consistency proof from 3 to 3: equal sizes but root1 {ROOTS[3][:8].hex()}…"
        f" != root2 {ROOTS[4][:8].hex()}…"
    )
    assert message(3, 8, [], ROOTS[3], ROOTS[8]) == "consistency proof from 3 to 8: proof is empty"
    assert message(3, 8, [*proof, proof[0]], ROOTS[3], ROOTS[8]) == (
        "consistency proof from 3 to 8: proof has 5 hashes, more than the tree needs"
    )
    assert message(3, 8, proof[:2], ROOTS[3], ROOTS[8]) == (
        "consistency proof from 3 to 8: proof has 2 hashes, fewer than the tree needs"
    )
    assert message(3, 8, proof, ROOTS[2], ROOTS[8]) == (
        f"consistency proof from 3 to 8: computed root1 {ROOTS[3][:8].hex()}…,"
        f" expected {ROOTS[2][:8].hex()}…"
    )
    assert message(3, 8, proof, ROOTS[3], ROOTS[7]) == (
        f"consistency proof from 3 to 8: computed root2 {ROOTS[8][:8].hex()}…,"
        f" expected {ROOTS[7][:8].hex()}…"
    )


def test_consistency_error_carries_evidence() -> None:
    proof = consistency_proof(3, 8, nodes_of(8))
    with pytest.raises(ConsistencyError) as info:
        verify_consistency(3, 8, proof, ROOTS[3], ROOTS[7])
    err = info.value
    assert (err.size1, err.size2, err.root1, err.root2, err.proof) == (
        3,
        8,
        ROOTS[3],
        ROOTS[7],
        tuple(proof),
    )
    assert err.prefixed("witness w1").message.startswith(
        "witness w1: consistency proof from 3 to 8"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: verify_inclusion(b"x" * 31, 0, 1, [], LEAVES[0]),
            "leaf hash: hash must be 32 bytes (SHA-256), got 31",
        ),
        (
            lambda: verify_inclusion(LEAVES[0], 0, 1, [], b"x" * 33),
            "root: hash must be 32 bytes (SHA-256), got 33",
        ),
        (
            lambda: verify_inclusion(LEAVES[0], 0, 2, [b""], ROOTS[2]),
            "proof[0]: hash must be 32 bytes (SHA-256), got 0",
        ),
        (
            lambda: verify_consistency(1, 2, [LEAVES[1]], b"", ROOTS[2]),
            "root1: hash must be 32 bytes (SHA-256), got 0",
        ),
        (
            lambda: verify_consistency(1, 2, [LEAVES[1]], LEAVES[0], b"r"),
            "root2: hash must be 32 bytes (SHA-256), got 1",
        ),
        (
            lambda: verify_inclusion(LEAVES[0], -1, 1, [], LEAVES[0]),
            "leaf index: must be between 0 and 2**64-1, got -1",
        ),
        (
            lambda: verify_consistency(1, 2**64, [], LEAVES[0], LEAVES[0]),
            "size2: must be between 0 and 2**64-1, got 18446744073709551616",
        ),
    ],
)
def test_malformed_inputs_are_invalid_input(call: Callable[[], None], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.message == message


def test_compact_range_matches_the_recursive_definition_at_every_size_to_4096() -> None:
    """RFC 6962 §2.1's MTH, memoised on (start, end) so every size up to 4096 stays cheap."""
    import functools

    leaves = [leaf_hash(b"leaf %d" % i) for i in range(4096)]

    @functools.cache
    def mth(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaves[start]
        k = 1 << ((end - start - 1).bit_length() - 1)  # largest power of two < n
        return node_hash(mth(start, start + k), mth(start + k, end))

    tree = CompactRange()
    for n in range(1, 4097):
        tree, _ = tree.append(leaves[n - 1])
        assert tree.root() == mth(0, n), f"size {n}"
