"""Import an ONNX model into TVM Relax with onnx-hawq's converters added (imports tvm).

TVM 0.27's Relax ONNX frontend has no registration hook: both its op check and its dispatch call
the module-level `_get_convert_map()`. `hawq_converters()` wraps that function for the duration of
an import (restoring it afterwards), so TVM's files stay untouched.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import onnx

from onnx_hawq.compiler.converters import CONVERTERS, INPUT_RANGES, UnsupportedNode, quantize_linear
from onnx_hawq.value_ranges import node_input_ranges
from onnx_hawq.errors import InputError
from onnx_hawq.ort import first_line


def _frontend():
    from tvm.relax.frontend.onnx import onnx_frontend

    return onnx_frontend


@contextlib.contextmanager
def hawq_converters():
    """Within the block, TVM's ONNX frontend also converts the ops in CONVERTERS."""
    fe = _frontend()
    original = fe._get_convert_map

    def extended():
        table = original()
        table.update(CONVERTERS)
        table["QuantizeLinear"] = quantize_linear(table["QuantizeLinear"])
        return table

    fe._get_convert_map = extended
    try:
        yield
    finally:
        fe._get_convert_map = original


def supported_ops() -> set[str]:
    with hawq_converters():
        return set(_frontend()._get_convert_map()) | {"Constant", "If"}


def check_supported(model: onnx.ModelProto) -> None:
    """InputError naming every op type (with one node) that TVM cannot import."""
    known = supported_ops()
    missing: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in known:
            missing.setdefault(node.op_type, node.name or node.output[0])
    if missing:
        names = ", ".join(f"{op} (node {name})" for op, name in missing.items())
        raise InputError(f"unsupported op for TVM: {names}")


def input_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    from onnx_hawq.model_io import input_specs

    return {name: str(dtype) for name, (_, dtype) in input_specs(model).items()}


def import_onnx(model: onnx.ModelProto, shapes: dict[str, list] | None = None):
    """The Relax IRModule of `model`; unsupported ops or parameters are one-line InputErrors."""
    from tvm.relax.frontend.onnx import from_onnx

    from onnx_hawq.transforms.pack_weights import unpack_int4

    model = unpack_int4(model)  # TVM's importer cannot read INT4 initializers
    check_supported(model)
    token = INPUT_RANGES.set(node_input_ranges(model))
    try:
        with hawq_converters(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TVM re-runs onnx.checker and warns about renames
            return from_onnx(model, shape_dict=shapes, dtype_dict=input_dtypes(model))
    except UnsupportedNode:
        raise
    except Exception as e:  # TVM raises TVMError, ValueError, AssertionError ...: the model is what it cannot take
        raise InputError(f"TVM cannot import the model: {type(e).__name__}: {first_line(e)}") from None
    finally:
        INPUT_RANGES.reset(token)
