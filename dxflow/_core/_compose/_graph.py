"""The ``depends_on`` graph: cycles, and the waves in which services may start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["find_cycle", "waves"]

Graph = Mapping[str, Sequence[str]]


def find_cycle(graph: Graph) -> list[str] | None:
    """A dependency cycle as ``[a, b, a]`` (a depends on b, b on a), or None.

    Deterministic: services and their dependencies are visited in sorted order.
    """
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and dep in graph:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def waves(graph: Graph) -> list[list[str]]:
    """Services grouped so that each depends only on services of earlier groups.

    Services of one wave may start in parallel; each wave is sorted by name. Raises
    ValueError on a cycle. Dependencies outside `graph` are ignored.
    """
    remaining = {node: {dep for dep in deps if dep in graph} for node, deps in graph.items()}
    result: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(node for node, deps in remaining.items() if deps <= done)
        if not ready:
            cycle = find_cycle({n: sorted(d) for n, d in remaining.items()})
            raise ValueError(f"dependency cycle: {' -> '.join(cycle or sorted(remaining))}")
        result.append(ready)
        done.update(ready)
        for node in ready:
            del remaining[node]
    return result
