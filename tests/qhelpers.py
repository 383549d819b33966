"""Quantize tiny float graphs and compare onnxruntime with the integer reference."""

from __future__ import annotations

import numpy as np
import onnx

from onnx_hawq.plans import Plan, uniform_plan
from onnx_hawq.quantization import quantize_model
from onnx_hawq.reference import ReferenceRunner
from tests.helpers import ORT_EXACT, run_ort


def quantize_tiny(model: onnx.ModelProto, feeds: dict, plan: Plan | str = "8") -> onnx.ModelProto:
    """Quantize `model` calibrated on `feeds`; check the result with onnx.checker."""
    plan = uniform_plan(plan) if isinstance(plan, str) else plan
    out = quantize_model(model, plan, feeds, rounding=ORT_EXACT).model
    onnx.checker.check_model(out)
    return out


def all_tensors(model: onnx.ModelProto) -> list[str]:
    return [o for n in model.graph.node for o in n.output]


def assert_ort_equals_reference(model: onnx.ModelProto, feeds: dict) -> None:
    """Every intermediate tensor of `model` is bit-identical in ORT and in the reference."""
    names = all_tensors(model)
    float_islands = {o for n in model.graph.node if n.op_type not in ("DequantizeLinear",) for o in n.output}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    got = run_ort(exposed, feeds, names)
    want = ReferenceRunner(model).run(names, feeds)
    for name, a, b in zip(names, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if a.dtype.kind == "f" and name in float_islands:  # float ops: ORT and numpy round differently
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
            continue
        bad = int(np.sum(a != b))
        assert bad == 0, f"{name}: {bad} of {a.size} elements differ"
