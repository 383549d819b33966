"""The one rule protocol of every rewrite, and the small graph view rules match against.

A rule is `match` (a node -> what the rule needs, or None), `check` (a reason to refuse, or None)
and `replace` (-> a `Replacement`: nodes out, nodes in, constants, and the records of the nodes it
wrote). Rules are pure: they read the view and build new nodes; only `apply_rules` edits the graph.
Rules that need facts beyond the graph (calibrated scales, value ranges) are made by a factory
`rule(ctx)` over a frozen context.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclasses.dataclass
class Replacement:
    """Remove `remove` nodes, insert `add` nodes where the first removed one was, add constants."""

    remove: list[onnx.NodeProto]
    add: list[onnx.NodeProto]
    constants: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    rename: dict[str, str] = dataclasses.field(default_factory=dict)  # tensor -> tensor, for consumers
    records: list[dict] = dataclasses.field(default_factory=list)  # report rows of the nodes written


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rewrite: match one anchor node, check it (reason when refused), build its replacement.

    `match(graph, node) -> M | None`, `check(graph, m) -> str | None`, `replace(graph, m) -> Replacement`.
    """

    name: str
    match: Callable[["Graph", onnx.NodeProto], object | None]
    check: Callable[["Graph", object], str | None]
    replace: Callable[["Graph", object], Replacement]


class Graph:
    """Producer/consumer/constant lookups over a ModelProto's graph (which it edits in place)."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self._names = 0
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        self._dirty: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the producer/consumer maps after the node list changed."""
        self.producer, self.consumers = {}, {}
        for node in self.g.node:
            for o in node.output:
                self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers.setdefault(i, []).append(node)
        self.graph_outputs = {o.name for o in self.g.output}

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    def attrs(self, node: onnx.NodeProto) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The single consumer of `tensor` when it is not also a graph output."""
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and tensor not in self.graph_outputs:
            return users[0]
        return None

    def fresh(self, base: str) -> str:
        self._names += 1
        return f"{base}__hawq{self._names}"

    def set_const(self, name: str, value: np.ndarray) -> None:
        """Set an initializer; written into the model by `flush`."""
        self.consts[name] = np.asarray(value)
        self._dirty.add(name)

    def flush(self) -> None:
        """Write changed initializers back into the ModelProto."""
        if not self._dirty:
            return
        kept = [i for i in self.g.initializer if i.name not in self._dirty]
        del self.g.initializer[:]
        self.g.initializer.extend(kept)
        self.g.initializer.extend(numpy_helper.from_array(self.consts[n], n) for n in sorted(self._dirty))
        self._dirty.clear()

    def apply(self, rep: Replacement) -> int:
        """Apply a replacement; return the index of its first new node (or of the gap)."""
        # keyed by output names (unique in SSA): NodeProto handles go stale when the list is rebuilt
        keys = {tuple(n.output) for n in rep.remove}
        nodes = list(self.g.node)
        gone = [tuple(n.output) in keys for n in nodes]
        pos = gone.index(True) if any(gone) else len(nodes)
        kept = [n for n, g in zip(nodes, gone) if not g]
        new = kept[:pos] + list(rep.add) + kept[pos:]
        del self.g.node[:]
        self.g.node.extend(new)  # protobuf copies: earlier NodeProto handles are now stale
        for name, value in rep.constants.items():
            self.set_const(name, value)
        for old, newname in rep.rename.items():
            for node in self.g.node:
                for k, i in enumerate(node.input):
                    if i == old:
                        node.input[k] = newname
        self.refresh()
        return pos

    def prune(self) -> None:
        """Drop nodes whose outputs nobody uses and initializers nobody reads."""
        changed = True
        while changed:
            live = set(self.graph_outputs)
            for node in self.g.node:
                live.update(i for i in node.input if i)
            keep = [n for n in self.g.node if any(o in live for o in n.output)]
            changed = len(keep) != len(self.g.node)
            del self.g.node[:]
            self.g.node.extend(keep)
        self.flush()
        used = {i for n in self.g.node for i in n.input} | self.graph_outputs
        inits = [i for i in self.g.initializer if i.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(inits)
        self.consts = {k: v for k, v in self.consts.items() if k in used}
        self.refresh()


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A match that a rule's check refused, with the reason."""

    rule: str
    node: str
    op: str
    reason: str

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "reason": self.reason, "rule": self.rule}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What `apply_rules` did: the refusals and the records of the nodes the rules wrote."""

    refused: tuple[Refusal, ...]
    records: tuple[dict, ...]


def apply_rules(target: onnx.ModelProto | Graph, rules: list[Rule], prune: bool = True) -> Outcome:
    """Apply `rules` in one forward sweep that revisits each replacement.

    `target` is edited in place; `prune` drops what no node reads afterwards.
    """
    graph = target if isinstance(target, Graph) else Graph(target)
    refused: dict[tuple[str, str], Refusal] = {}
    records: list[dict] = []
    i = 0
    while i < len(graph.g.node):
        node = graph.g.node[i]
        for rule in rules:
            m = rule.match(graph, node)
            if m is None:
                continue
            reason = rule.check(graph, m)
            name = node.name or node.output[0]
            if reason:
                refused[(rule.name, name)] = Refusal(rule.name, name, node.op_type, reason)
                continue
            rep = rule.replace(graph, m)
            records.extend(rep.records)
            i = graph.apply(rep) - 1
            break
        i += 1
    if prune:
        graph.prune()
    else:
        graph.flush()
    return Outcome(tuple(refused.values()), tuple(records))
