"""Print import cycles between atelier's modules (function-level imports included); exit 1 if there are any.

The layers contract (pyproject's [tool.importlinter]) forbids imports that run back up between layers; this
finds circles inside a layer too, e.g. between two modules of one package. Run by .ci/run.
"""

from __future__ import annotations

import sys

import grimp


def cycles(package: str = "atelier") -> list[list[str]]:
    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    # Tarjan's strongly connected components: every component of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for m in modules:
        if m not in index:
            visit(m)
    return found


if __name__ == "__main__":
    circles = cycles()
    for c in circles:
        print("import circle: " + " <-> ".join(c))
    print(f"{len(circles)} import circle(s)")
    sys.exit(1 if circles else 0)
