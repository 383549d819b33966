"""Rule: a node whose inputs are all constants becomes an initializer (e.g. ConstantOfShape weights)."""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from onnx_hawq.transforms.graph import Graph, Replacement, Rule

_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def match(graph: Graph, node: onnx.NodeProto):
    if node.op_type in _NONDETERMINISTIC or node.domain not in ("", "ai.onnx"):
        return None
    if any(i and i not in graph.consts for i in node.input):
        return None
    return node


def check(graph: Graph, node) -> str | None:
    if any(o in graph.graph_outputs for o in node.output):
        return "its output is a graph output"
    return None


def _evaluate(graph: Graph, node: onnx.NodeProto) -> list:
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    opset = [o for o in graph.model.opset_import if o.domain in ("", "ai.onnx")]
    g = helper.make_graph(
        [node], "fold", [helper.make_tensor_value_info(i, numpy_helper.from_array(graph.consts[i]).data_type, None)
                         for i in inputs],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output])
    m = helper.make_model(g, opset_imports=opset)
    return ReferenceEvaluator(m).run(None, {i: graph.consts[i] for i in inputs})


def replace(graph: Graph, node) -> Replacement:
    values = _evaluate(graph, node)
    return Replacement(remove=[node], add=[], constants=dict(zip(node.output, values)))


RULE = Rule("fold-constants", match, check, replace)
