"""onnxruntime sessions as onnx-hawq opens them (CPU provider, quiet logs), and graph copies
that expose inner tensors as outputs."""

from __future__ import annotations

import onnx
import onnxruntime as ort

from onnx_hawq.large_models import check as check_any_size
from onnx_hawq.large_models import session as session_any_size


def expose(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of `model` with `tensors` added as graph outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    for t in tensors:
        if t not in have:
            out.graph.output.append(onnx.ValueInfoProto(name=t))
    return out


def session(model: onnx.ModelProto, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return session_any_size(model, opts)  # any size: a > 2 GB model loads from a written copy


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (onnxruntime's and TVM's run to many lines)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_written(model: onnx.ModelProto, what: str = "the quantized model") -> None:
    """Refuse to hand out a model that fails onnx.checker or that onnxruntime will not load."""
    from onnx_hawq.errors import HawqError

    try:
        check_any_size(model)
    except onnx.checker.ValidationError as e:
        raise HawqError(f"{what} fails onnx.checker: {first_line(e)} (this is a bug in onnx-hawq)") from None
    try:
        session(model)
    except Exception as e:  # onnxruntime raises its own exception types
        raise HawqError(f"onnxruntime cannot load {what}: {first_line(e)} (this is a bug in onnx-hawq)") from None
