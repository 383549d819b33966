"""Node order of an ONNX graph: the one topological sort."""

from __future__ import annotations

import collections
import heapq

import onnx

from onnx_hawq.errors import HawqError


def topological_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes ordered so every input is produced before it is read, earliest graph
    position first (a sorted graph keeps its order); a cycle or an undefined input is a HawqError."""
    known = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    producers = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    waiting, readers = [0] * len(graph.node), collections.defaultdict(list)
    missing = set()
    for k, node in enumerate(graph.node):
        for i in set(node.input):
            if i in known:
                continue
            if i not in producers:
                missing.add(i)
                continue
            waiting[k] += 1
            readers[producers[i]].append(k)
    if missing:
        raise HawqError(f"graph reads undefined input(s): {', '.join(sorted(missing)[:5])}")
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for r in readers[k]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(graph.node):
        stuck = next(graph.node[k] for k, w in enumerate(waiting) if w)
        raise HawqError(f"graph has a cycle at node {stuck.name or stuck.output[0]}")
    return [graph.node[k] for k in order]


def sort_graph(graph: onnx.GraphProto) -> None:
    """Reorder `graph.node` topologically in place."""
    nodes = topological_nodes(graph)
    copies = [onnx.NodeProto() for _ in nodes]
    for c, n in zip(copies, nodes):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
