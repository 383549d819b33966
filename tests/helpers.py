"""Tiny-graph builders and runners shared by the tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from onnx_hawq.arith.quantizer import WeightQuant, WeightRange
from onnx_hawq.calibration.rounding import RoundingConfig
from onnx_hawq.arith.quantizer import INT32_U8S8_FLAGS, cpu_flags, host_weight_range

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_models"


def make_model(nodes, inputs, outputs, inits: dict, opset: int = 17) -> onnx.ModelProto:
    """A model from nodes, (name, shape) inputs/outputs and {name: array} initializers."""
    vi = lambda n, s: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)
    graph = helper.make_graph(nodes, "t", [vi(n, s) for n, s in inputs], [vi(n, s) for n, s in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run_ort(model: onnx.ModelProto, feeds: dict, outputs=None) -> list:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(outputs, feeds)


def op_list(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# onnxruntime's u8 x s8 kernel accumulates in int32 on these CPUs (exact at the full weight range);
# AVX2 alone adds pairs of products in int16, which full-range 8-bit weights on 8-bit inputs can saturate
CPU_FLAGS = cpu_flags()
INT32_U8S8 = bool(CPU_FLAGS & set(INT32_U8S8_FLAGS))
needs_int32_u8s8 = pytest.mark.skipif(
    not INT32_U8S8, reason="no avx512_vnni/avx_vnni/amx_int8 in /proc/cpuinfo: onnxruntime's AVX2 u8s8 kernel "
                           "saturates int16 pair sums on full-range 8-bit weights")
ORT_EXACT_RANGE = host_weight_range()  # where onnxruntime is exact here (the tool's default)
ORT_EXACT = RoundingConfig(WeightQuant(range=ORT_EXACT_RANGE))  # quantize so onnxruntime is exact on this CPU
