"""Parsing a job: a submit step's keys or a job file (parallelism or vertices and edges, restart
strategy, failure injection) into a JobSpec, checked against the limits and for cycles.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from yaml.nodes import Node, SequenceNode

from minicluster.cluster.model import (
    JobEdge,
    JobVertex,
    RestartStrategy,
)
from minicluster.limits import (
    MAX_EDGES_PER_JOB,
    MAX_PARALLELISM,
    MAX_RESTART_ATTEMPTS,
    MAX_TASKS_PER_JOB,
    MAX_VERTICES_PER_JOB,
)
from minicluster.scenario.loader.keys import EDGE_KEYS, FAIL_KEYS, RESTART_KEYS, VERTEX_KEYS
from minicluster.scenario.loader.model import JobSpec, Source
from minicluster.scenario.loader.reader import _did_you_mean, _Map, _Reader

# --------------------------------------------------------------------------------------------
# Jobs


def _parse_restart(r: _Reader, node: Node, path: str) -> RestartStrategy:
    m = r.mapping(node, path, "a map {attempts, delay}")
    restart = RestartStrategy()
    if (n := m.get("attempts")) is not None:
        restart.attempts = r.integer(n, m.at("attempts"), maximum=MAX_RESTART_ATTEMPTS)
    if (n := m.get("delay")) is not None:
        restart.delay = r.duration(n, m.at("delay"))
    m.refuse_unknown(RESTART_KEYS)
    return restart


def _apply_failure(r: _Reader, node: Node, path: str, vertex: JobVertex) -> None:
    m = r.mapping(node, path, "a map {subtasks, after, attempts}")
    subtasks_node = m.require("subtasks", " (the subtask indexes that should fail)")
    subtasks_path = m.at("subtasks")
    items: list[tuple[Node, str]]
    if isinstance(subtasks_node, SequenceNode):
        nodes = r.sequence_at_most(
            subtasks_node,
            subtasks_path,
            "a list of subtask indexes",
            vertex.parallelism,
            "subtask indexes (the vertex's parallelism)",
        )
        if not nodes:
            raise r.error(subtasks_path, subtasks_node, "expected at least one subtask index")
        items = [(n, f"{subtasks_path}[{i}]") for i, n in enumerate(nodes)]
    else:
        items = [(subtasks_node, subtasks_path)]
    subtasks: set[int] = set()
    for item, item_path in items:
        index = r.integer(item, item_path)
        if index >= vertex.parallelism:
            raise r.error(item_path, item, _no_such_subtask(index, vertex))
        subtasks.add(index)
    vertex.fail_subtasks = sorted(subtasks)
    if (n := m.get("after")) is not None:
        vertex.fail_after = r.duration(n, m.at("after"))
    if (n := m.get("attempts")) is not None:
        vertex.fail_attempts = r.integer(
            n, m.at("attempts"), minimum=1, maximum=MAX_RESTART_ATTEMPTS
        )
    m.refuse_unknown(FAIL_KEYS)


def _no_such_subtask(index: int, vertex: JobVertex) -> str:
    return (
        f"subtask {index} does not exist: vertex {vertex.name!r} has parallelism "
        f"{vertex.parallelism} (subtasks 0 to {vertex.parallelism - 1})"
    )


def _parse_vertex(r: _Reader, node: Node, path: str) -> tuple[JobVertex, Node]:
    m = r.mapping(node, path, "a vertex: a map {name, parallelism, task_duration}")
    name_node = m.require("name")
    vertex = JobVertex(name=r.text(name_node, m.at("name"), "a vertex name (text)"), parallelism=1)
    if (n := m.get("parallelism")) is not None:
        vertex.parallelism = r.integer(n, m.at("parallelism"), minimum=1, maximum=MAX_PARALLELISM)
    if (n := m.get("task_duration")) is not None:
        vertex.task_duration = r.duration(n, m.at("task_duration"))
    if (n := m.get("fail")) is not None:
        _apply_failure(r, n, m.at("fail"), vertex)
    m.refuse_unknown(VERTEX_KEYS)
    return vertex, name_node


def _parse_edges(r: _Reader, node: Node, path: str, vertices: Collection[str]) -> list[JobEdge]:
    edges: list[JobEdge] = []
    seen: set[tuple[str, str]] = set()
    items = r.sequence_at_most(
        node, path, "a list of edges {from, to, pattern}", MAX_EDGES_PER_JOB, "edges in a job"
    )
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        m = r.mapping(item, item_path, "an edge: a map {from, to, pattern}")
        ends: list[str] = []
        for key in ("from", "to"):
            end_node = m.require(key)
            name = r.text(end_node, m.at(key), "a vertex name (text)")
            if name not in vertices:
                raise r.error(
                    m.at(key),
                    end_node,
                    f"no vertex named {name!r} in this job{_did_you_mean(name, vertices)}",
                )
            ends.append(name)
        source, target = ends
        if source == target:
            raise r.error(item_path, item, f"an edge cannot connect {source!r} to itself")
        if (source, target) in seen:
            raise r.error(item_path, item, f"the edge {source} -> {target} is given twice")
        seen.add((source, target))
        pattern = "all-to-all"
        if (n := m.get("pattern")) is not None:
            pattern = r.choice(n, m.at("pattern"), ("all-to-all", "pointwise"), "an edge pattern")
        m.refuse_unknown(EDGE_KEYS)
        edges.append(JobEdge(source, target, pattern))
    cycle = _find_cycle(vertices, edges)
    if cycle:
        raise r.error(path, node, f"the edges form a cycle: {' -> '.join(cycle)}")
    return edges


def _find_cycle(vertices: Collection[str], edges: list[JobEdge]) -> list[str]:
    successors: dict[str, list[str]] = {v: [] for v in vertices}
    for edge in edges:
        successors[edge.source].append(edge.target)
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in successors:
        if start in state:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            vertex, i = stack[-1]
            if i < len(successors[vertex]):
                stack[-1] = (vertex, i + 1)
                nxt = successors[vertex][i]
                if state.get(nxt) == 1:
                    names = [v for v, _ in stack]
                    return [*names[names.index(nxt) :], nxt]
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[vertex] = 2
                stack.pop()
    return []


def _parse_job_body(
    r: _Reader, m: _Map, name: str, known: tuple[str, ...], source: Source
) -> JobSpec:
    """The job's keys of ``m`` (a job file, or a submit step); ``known`` is every key that
    ``m`` may hold, its name key included."""
    simple = [k for k in ("parallelism", "task_duration", "fail") if m.has(k)]
    vertices_node = m.get("vertices")
    if vertices_node is not None:
        if simple:
            raise r.error(
                m.at(simple[0]),
                m.get(simple[0]),
                f"give either vertices or {simple[0]}, not both"
                + ("; put fail: inside the vertex that should fail" if simple[0] == "fail" else ""),
            )
        vertices_path = m.at("vertices")
        nodes = r.sequence_at_most(
            vertices_node,
            vertices_path,
            "a list of vertices",
            MAX_VERTICES_PER_JOB,
            "vertices in a job",
        )
        if not nodes:
            raise r.error(vertices_path, vertices_node, "a job needs at least one vertex")
        vertices: list[JobVertex] = []
        first_line: dict[str, int | None] = {}
        for i, item in enumerate(nodes):
            vertex, name_node = _parse_vertex(r, item, f"{vertices_path}[{i}]")
            if vertex.name in first_line:
                raise r.error(
                    f"{vertices_path}[{i}].name",
                    name_node,
                    f"vertex name {vertex.name!r} is already used on line "
                    f"{first_line[vertex.name]}; vertex names must be unique within a job",
                )
            first_line[vertex.name] = r.line(name_node)
            vertices.append(vertex)
        edges: list[JobEdge] = []
        if (n := m.get("edges")) is not None:
            edges = _parse_edges(r, n, m.at("edges"), list(first_line))
    else:
        if m.has("edges"):
            raise r.error(m.at("edges"), m.get("edges"), "edges need vertices: to connect")
        vertex = JobVertex(name=name, parallelism=1)
        if (n := m.get("parallelism")) is not None:
            vertex.parallelism = r.integer(
                n, m.at("parallelism"), minimum=1, maximum=MAX_PARALLELISM
            )
        if (n := m.get("task_duration")) is not None:
            vertex.task_duration = r.duration(n, m.at("task_duration"))
        if (n := m.get("fail")) is not None:
            _apply_failure(r, n, m.at("fail"), vertex)
        vertices, edges = [vertex], []
    restart = RestartStrategy()
    if (n := m.get("restart")) is not None:
        restart = _parse_restart(r, n, m.at("restart"))
    failover = None
    if (n := m.get("failover_strategy")) is not None:
        failover = r.choice(n, m.at("failover_strategy"), ("region", "full"), "a failover strategy")
    m.refuse_unknown(known)
    spec = JobSpec(
        name=name,
        vertices=vertices,
        edges=edges,
        restart=restart,
        failover_strategy=failover,
        source=source,
    )
    if spec.task_count > MAX_TASKS_PER_JOB:
        raise r.error(
            m.path,
            m.node,
            f"a job has at most {MAX_TASKS_PER_JOB:,} tasks (the sum of its vertices' "
            f"parallelism), got {spec.task_count:,}",
        )
    spec.to_job_graph(random.Random(0))  # the model's own checks, as a ScenarioError here
    return spec
