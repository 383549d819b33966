"""Graph preparation before quantization: constants folded, BN folded, opset >= 17, shapes inferred."""

from __future__ import annotations

import onnx

from onnx_hawq.large_models import infer_shapes
from onnx_hawq.errors import InputError
from onnx_hawq.transforms import fold_batchnorm, fold_channel_affine, fold_constants, remove_identity, sum_to_add
from onnx_hawq.transforms.graph import apply_rules

TARGET_OPSET = 17
CLEANUP_RULES = [fold_constants.RULE, remove_identity.RULE, sum_to_add.RULE]
FOLD_RULES = [fold_batchnorm.RULE, fold_channel_affine.RULE, fold_constants.RULE]


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """IR-3 graphs list every initializer as a graph input too; keep only real inputs."""
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(real)
    model.ir_version = max(model.ir_version, 8)


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    if default_opset(model) >= TARGET_OPSET:
        return model
    from onnx import version_converter

    try:
        return version_converter.convert_version(model, TARGET_OPSET)
    except Exception as e:
        raise InputError(f"cannot convert the model from opset {default_opset(model)} to "
                         f"{TARGET_OPSET}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def prepare_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of `model` ready for calibration and the integer rewrite."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _drop_initializer_inputs(out)
    apply_rules(out, CLEANUP_RULES)
    out = _upgrade_opset(out)
    apply_rules(out, FOLD_RULES + CLEANUP_RULES)
    try:
        out = infer_shapes(out, data_prop=True)
    except Exception:
        pass
    return out
