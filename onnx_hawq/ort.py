"""onnxruntime sessions as onnx-hawq opens them (CPU provider, quiet logs), and graph copies
that expose inner tensors as outputs."""

from __future__ import annotations

import onnx
import onnxruntime as ort


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
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
