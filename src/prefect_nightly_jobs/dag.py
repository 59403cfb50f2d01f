"""Dependency order: a deterministic topological sort (ties in registration order)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from prefect_nightly_jobs.errors import DependencyError


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a closed path (``[a, b, a]``), or None. ``graph`` maps a job to its upstreams."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for up in graph.get(node, ()):
            if state.get(up) == 1:
                return [*path[path.index(up) :], up]
            if up not in state and (found := visit(up)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)) is not None:
            # Read the cycle in the direction jobs run: upstream first.
            return list(reversed(found))
    return None


def topological_order(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Jobs in an order where every job comes after its upstreams.

    ``graph`` maps each job, in registration order, to the jobs it depends on. Among jobs that are
    ready at the same time, the one registered first goes first, so the order never changes between
    runs. Unknown dependencies and cycles raise ``DependencyError`` naming them.
    """
    rank = {name: i for i, name in enumerate(graph)}
    for name, ups in graph.items():
        for up in ups:
            if up not in rank:
                raise DependencyError(
                    f"job {name!r} depends on unknown job {up!r}: register {up!r} "
                    f"or remove it from depends_on (known: {', '.join(graph) or 'none'})"
                )
            if up == name:
                raise DependencyError(f"job {name!r} depends on itself: remove it from depends_on")
    cycle = find_cycle(graph)
    if cycle is not None:
        raise DependencyError(
            f"dependency cycle: {' -> '.join(cycle)}: remove one of these depends_on entries"
        )
    waiting = {name: len(set(ups)) for name, ups in graph.items()}
    downstream: dict[str, list[str]] = {name: [] for name in graph}
    for name, ups in graph.items():
        for up in set(ups):
            downstream[up].append(name)
    ready = [rank[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(graph)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for down in downstream[name]:
            waiting[down] -= 1
            if waiting[down] == 0:
                heapq.heappush(ready, rank[down])
    return order
