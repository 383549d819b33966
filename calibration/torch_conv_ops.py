"""ONNX ConvTranspose (1-D/2-D/3-D, groups, strides, dilations, pads, output_padding, auto_pad,
output_shape) as torch functions, registered into `torch_ops.OPS`."""

from __future__ import annotations

import torch.nn.functional as F

from onnx_hawq.calibration.torch_ops import Attrs, op

_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def transpose_pads(a: Attrs, in_sizes, kernel, strides, dils, out_pad) -> tuple[list[int], list[int]]:
    """(begin pads, end pads) per spatial axis as the ONNX spec derives them; negative pads extend."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    out_shape = a.get("output_shape")
    if out_shape is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [s * st for s, st in zip(in_sizes, strides)]
    if out_shape is None:
        pads = [0] * (2 * n) if auto == "VALID" else list(a.get("pads", [0] * (2 * n)))
        return pads[:n], pads[n:]
    out_shape = list(out_shape)[-n:]
    begins, ends = [], []
    for i in range(n):
        total = strides[i] * (in_sizes[i] - 1) + out_pad[i] + (kernel[i] - 1) * dils[i] + 1 - out_shape[i]
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins, ends


@op("ConvTranspose")
def conv_transpose(a: Attrs, x, w, b=None):
    """Full transposed convolution, then crop (or zero-extend) by pads and output_padding, then bias."""
    n = w.dim() - 2
    kernel = list(w.shape[2:])
    strides, dils = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
    out_pad = list(a.get("output_padding", [0] * n))[:n]
    begins, ends = transpose_pads(a, list(x.shape[2:]), kernel, strides, dils, out_pad)
    y = _CONV_T[n](x, w, None, tuple(strides), 0, 0, a.get("group", 1), tuple(dils))
    flat = [p for i in reversed(range(n)) for p in (-begins[i], out_pad[i] - ends[i])]
    if any(flat):
        y = F.pad(y, flat)
    return y if b is None else y + b.reshape((1, -1) + (1,) * n)
