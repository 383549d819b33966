"""ONNX models built in code for benchmarks (random weights, no torch needed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class _Builder:
    def __init__(self, seed: int):
        self.r = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True, prefix: str = "") -> str:
        w, b, y = f"{prefix}.weight", f"{prefix}.bias", self.name("t")
        std = np.sqrt(2.0 / (cin * k * k))
        self.inits += [numpy_helper.from_array((self.r.standard_normal((cout, cin, k, k)) * std).astype(np.float32), w),
                       numpy_helper.from_array((self.r.standard_normal(cout) * 0.05).astype(np.float32), b)]
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], name=prefix, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[k // 2] * 4))
        return self.op("Relu", [y]) if relu else y

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        y = self.name("t")
        self.nodes.append(helper.make_node(op_type, inputs, [y], **attrs))
        return y

    def block(self, x: str, cin: int, cout: int, stride: int, prefix: str) -> str:
        h = self.conv(x, cin, cout, 3, stride, True, f"{prefix}.conv1")
        h = self.conv(h, cout, cout, 3, 1, False, f"{prefix}.conv2")
        skip = x if stride == 1 and cin == cout else self.conv(x, cin, cout, 1, stride, False, f"{prefix}.downsample.0")
        return self.op("Relu", [self.op("Add", [h, skip])])


def resnet(blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem: int = 64, image: int = 224,
           classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    """A ResNet-18-shaped float model (ImageNet stem, basic blocks) with random weights."""
    b = _Builder(seed)
    x = b.conv("input", 3, stem, 7, 2, True, "conv1")
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = stem
    for stage, (n, width) in enumerate(zip(blocks, widths), start=1):
        for i in range(n):
            x = b.block(x, cin, width, 2 if i == 0 and stage > 1 else 1, f"layer{stage}.{i}")
            cin = width
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    b.inits += [numpy_helper.from_array((b.r.standard_normal((classes, cin)) * 0.05).astype(np.float32), "fc.weight"),
                numpy_helper.from_array(np.zeros(classes, np.float32), "fc.bias")]
    b.nodes.append(helper.make_node("Gemm", [x, "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(b.nodes, "resnet", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                                                   ["N", 3, image, image])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", classes])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
