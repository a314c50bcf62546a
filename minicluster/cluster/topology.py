"""The scheduling topology of a job: execution vertices, pipelined regions and slot sharing.

Flink schedules a streaming job by *pipelined region* (PipelinedRegionSchedulingStrategy): the
subtasks that exchange data through pipelined edges must run at the same time, so each region's
slots are requested as one bulk and its tasks deployed together. A failure restarts the failed
task's region only (RestartPipelinedRegionFailoverStrategy). The regions come from the edges:

- an all-to-all edge connects every subtask of its source to every subtask of its target, so the
  two vertices end up in one region;
- a pointwise edge connects subtasks as Flink's ``EdgeManagerBuildUtil.connectPointwise`` does
  (i to i for equal parallelism, ranges otherwise), so regions chain subtask by subtask;
- a subtask with no edge is a region of its own.

Slot sharing is Flink's default: every vertex is in one slot sharing group, and the subtasks with
the same index share a slot (one execution slot sharing group per subtask index). A region
needs one slot per distinct subtask index among its subtasks; a group's slot may serve several
regions (the subtask ``i`` of two unconnected vertices).

Pure functions over a :class:`JobGraph`, no I/O: tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import JobGraph

ExecutionVertexId = tuple[str, int]  # (vertex name, subtask index)


@dataclass(frozen=True)
class PipelinedRegion:
    """Subtasks that are scheduled, deployed and restarted together."""

    index: int
    vertices: tuple[ExecutionVertexId, ...]  # in job order: vertex by vertex, subtask by subtask
    groups: tuple[int, ...]  # the slot sharing groups (subtask indexes) it needs, ascending

    @property
    def slots(self) -> int:
        return len(self.groups)


@dataclass(frozen=True)
class SchedulingTopology:
    regions: tuple[PipelinedRegion, ...]
    region_of: dict[ExecutionVertexId, int]

    @property
    def slots(self) -> int:
        """Slot sharing groups of the whole job: what it takes to run every task at once."""
        return len({g for r in self.regions for g in r.groups})


def pointwise_targets(source_parallelism: int, target_parallelism: int) -> list[list[int]]:
    """For each source subtask, the target subtasks a pointwise edge connects it to."""
    s, t = source_parallelism, target_parallelism
    targets: list[list[int]] = [[] for _ in range(s)]
    if s == t:
        for i in range(s):
            targets[i].append(i)
    elif s > t:
        # each target reads a range of sources
        for j in range(t):
            for i in range(j * s // t, (j + 1) * s // t):
                targets[i].append(j)
    else:
        # each source writes to a range of targets
        for i in range(s):
            start = (i * t + s - 1) // s
            end = ((i + 1) * t + s - 1) // s
            targets[i].extend(range(start, end))
    return targets


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller index stays the root, so regions are numbered in job order
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def build_topology(graph: JobGraph) -> SchedulingTopology:
    """Pipelined regions of the job (it has been validated: edges name known vertices)."""
    offsets: dict[str, int] = {}
    parallelism: dict[str, int] = {}
    ids: list[ExecutionVertexId] = []
    for vertex in graph.vertices:
        offsets[vertex.name] = len(ids)
        parallelism[vertex.name] = vertex.parallelism
        ids.extend((vertex.name, i) for i in range(vertex.parallelism))
    sets = _UnionFind(len(ids))
    for edge in graph.edges:
        a, b = offsets[edge.source], offsets[edge.target]
        pa, pb = parallelism[edge.source], parallelism[edge.target]
        if edge.pattern == "all-to-all":
            # connecting everything to everything joins both vertices into one set; a chain of
            # unions is enough (linear, not pa * pb)
            for i in range(1, pa):
                sets.union(a, a + i)
            for j in range(pb):
                sets.union(a, b + j)
        else:
            for i, targets in enumerate(pointwise_targets(pa, pb)):
                for j in targets:
                    sets.union(a + i, b + j)
    members: dict[int, list[int]] = {}
    for position in range(len(ids)):
        members.setdefault(sets.find(position), []).append(position)
    regions: list[PipelinedRegion] = []
    region_of: dict[ExecutionVertexId, int] = {}
    for root in sorted(members):
        vertices = tuple(ids[p] for p in members[root])
        index = len(regions)
        regions.append(
            PipelinedRegion(index, vertices, tuple(sorted({subtask for _, subtask in vertices})))
        )
        for vertex_id in vertices:
            region_of[vertex_id] = index
    return SchedulingTopology(tuple(regions), region_of)
