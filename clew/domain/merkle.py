"""Merkle trees over captured predictions: leaf hashes, levels, inclusion proofs.

The tree is 16-ary: a node is ``sha256(0x01 || child hashes)`` over up to 16 children, a leaf
is ``sha256`` of the messages of its rows laid end to end, each message starting with 0x00
(clew/domain/leaves.py). The distinct prefixes keep a leaf from ever passing for a node.
A wide tree needs 15× fewer node hashes than a binary one, which is what lets capture sign
a million predictions a second from Python; a proof is one sibling group per level.

Everything here is pure (bytes in, bytes out) so an auditor can re-run it with no store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

ARITY = 16
HASH_SIZE = 32
NODE_PREFIX = b"\x01"


@dataclass(frozen=True)
class ProofStep:
    """One level of an inclusion proof: the sibling group and where the path sits in it."""

    position: int
    group: tuple[bytes, ...]

    def to_dict(self) -> dict[str, object]:
        return {"position": self.position, "group": [item.hex() for item in self.group]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ProofStep:
        group = data["group"]
        assert isinstance(group, list)
        return cls(int(str(data["position"])), tuple(bytes.fromhex(item) for item in group))


def leaf_hashes_fixed(buffer: bytes | memoryview, width: int) -> bytes:
    """Hashes of consecutive ``width``-byte slices of ``buffer`` (the last may be shorter):
    each slice is one leaf's messages, every message already starting with 0x00."""
    sha = hashlib.sha256
    view = memoryview(buffer)
    return b"".join([sha(view[i : i + width]).digest() for i in range(0, len(buffer), width)])


def leaf_hashes_variable(buffer: bytes, offsets: Sequence[int]) -> bytes:
    """Leaf hashes of ``buffer[offsets[i]:offsets[i+1]]``, each one leaf's messages."""
    sha = hashlib.sha256
    view = memoryview(buffer)
    return b"".join(
        [sha(view[offsets[i] : offsets[i + 1]]).digest() for i in range(len(offsets) - 1)]
    )


def node_hash(children: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + children).digest()


def build_levels(leaves: bytes) -> list[bytes]:
    """Every level from the leaves (first) to the root (last, one hash).

    A single leaf still gets one node above it, so a root is never a bare leaf hash.
    """
    if not leaves or len(leaves) % HASH_SIZE:
        raise ValueError("leaves must be a non-empty concatenation of 32-byte hashes")
    levels = [leaves]
    span = ARITY * HASH_SIZE
    sha = hashlib.sha256
    while len(levels) == 1 or len(levels[-1]) > HASH_SIZE:
        below = memoryview(levels[-1])
        levels.append(
            b"".join(
                [
                    sha(NODE_PREFIX + below[i : i + span]).digest()
                    for i in range(0, len(below), span)
                ]
            )
        )
    return levels


def level_sizes(count: int) -> list[int]:
    """How many hashes each level holds for ``count`` leaves (same shape as build_levels)."""
    sizes = [count]
    while len(sizes) == 1 or sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // ARITY))
    return sizes


def proof_positions(count: int, index: int) -> list[tuple[int, int, int]]:
    """For each level below the root: (level, first index of the group, group length)."""
    if not 0 <= index < count:
        raise ValueError(f"leaf {index} is outside a tree of {count} leaves")
    steps = []
    sizes = level_sizes(count)
    for level, size in enumerate(sizes[:-1]):
        start = index - index % ARITY
        steps.append((level, start, min(ARITY, size - start)))
        index //= ARITY
    return steps


def proof(levels: Sequence[bytes], index: int) -> list[ProofStep]:
    count = len(levels[0]) // HASH_SIZE
    steps = []
    for level, start, length in proof_positions(count, index):
        data = levels[level]
        group = tuple(
            data[(start + k) * HASH_SIZE : (start + k + 1) * HASH_SIZE] for k in range(length)
        )
        steps.append(ProofStep(index % ARITY, group))
        index //= ARITY
    return steps


def root_from_proof(leaf: bytes, steps: Sequence[ProofStep]) -> bytes:
    """Fold a leaf hash up its proof; the result must equal the signed root."""
    current = leaf
    for step in steps:
        if not 0 <= step.position < len(step.group) or step.group[step.position] != current:
            raise ValueError("the proof does not contain the hash it is meant to extend")
        current = node_hash(b"".join(step.group))
    return current
