"""The synthetic lineage graph both clew and ML Metadata are loaded with (no clew imports).

``chains`` pipelines of ``stages`` steps. Step ``s`` of chain ``c`` is a run that consumes a
fresh raw dataset, its own chain's previous output and the previous output of a pseudo-random
neighbour chain (fan-in of 3), and produces one output artifact. So every node has a deep
history (``stages`` runs, 2 hops each) and the cone above or below any node widens with depth,
like real feature pipelines feeding many models. Each run also belongs to one of 100
experiment contexts.

Nodes are numbered; ``node_id`` turns a number into a 26-character id in ULID's alphabet, so
clew accepts it in ``run:<id>`` and ``artifact:<id>`` refs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

NODES_PER_STEP = 3
RAW, RUN, OUTPUT = 0, 1, 2
EXPERIMENTS = 100


@dataclass(frozen=True)
class Shape:
    chains: int
    stages: int

    @classmethod
    def for_nodes(cls, nodes: int, stages: int = 30) -> Shape:
        return cls(max(2, math.ceil(nodes / (stages * NODES_PER_STEP))), stages)

    @property
    def nodes(self) -> int:
        return self.chains * self.stages * NODES_PER_STEP

    def number(self, chain: int, stage: int, role: int) -> int:
        return (chain * self.stages + stage) * NODES_PER_STEP + role

    def neighbour(self, chain: int, stage: int) -> int:
        """A fixed pseudo-random other chain whose previous output this step also reads."""
        return (chain + 1 + (chain * 7919 + stage * 104_729) % (self.chains - 1)) % self.chains

    def steps(self) -> Iterator[tuple[int, int]]:
        for chain in range(self.chains):
            for stage in range(self.stages):
                yield chain, stage

    def inputs(self, chain: int, stage: int) -> list[int]:
        """Node numbers of the artifacts step (chain, stage) consumes."""
        found = [self.number(chain, stage, RAW)]
        if stage > 0:
            found.append(self.number(chain, stage - 1, OUTPUT))
            found.append(self.number(self.neighbour(chain, stage), stage - 1, OUTPUT))
        return found

    def starts(self, count: int, depth: int, seed: int = 11) -> list[int]:
        """Output artifacts with at least ``depth`` hops of history above and below them."""
        margin = depth // 2 + 1
        rng = random.Random(seed)
        return [
            self.number(
                rng.randrange(self.chains), rng.randrange(margin, self.stages - margin), OUTPUT
            )
            for _ in range(count)
        ]


def node_id(number: int) -> str:
    return f"{number:026d}"


def digest(number: int) -> str:
    return f"sha256:{number:064x}"
