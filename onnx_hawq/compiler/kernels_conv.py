"""The VNNI 2-D conv kernel (NCHW4c u8 x OIHW16o4i s8 -> NCHW16c int32), groups=1; see kernels.py."""

from __future__ import annotations

from onnx_hawq.compiler.kernels import CONV_COLS, ConvShape, Kernel, _ceil, _compile
from onnx_hawq.compiler.vnni import INTRIN
from onnx_hawq.errors import InputError


def conv_func(s: ConvShape):
    """TE of the conv with spatial zero padding and the output width padded to CONV_COLS; a PrimFunc."""
    import tvm
    from tvm import te

    oh, ow = s.out_hw()
    owp, icb, ocb = _ceil(ow, CONV_COLS), _ceil(s.in_channels, 4) // 4, _ceil(s.out_channels, 16) // 16
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = s.kernel, s.stride, s.padding, s.dilation
    hp, wp = (oh - 1) * sh + (kh - 1) * dh + 1, (owp - 1) * sw + (kw - 1) * dw + 1
    x = te.placeholder((s.batch, icb, s.height, s.width, 4), "uint8", name="X")
    w = te.placeholder((ocb, icb, kh, kw, 16, 4), "int8", name="W")
    inside = lambda h, v: tvm.tirx.all(h >= ph, h < s.height + ph, v >= pw, v < s.width + pw)  # noqa: E731
    xp = te.compute((s.batch, icb, hp, wp, 4), lambda n, c, h, v, e: tvm.tirx.if_then_else(
        inside(h, v), x[n, c, h - ph, v - pw, e], tvm.tirx.const(0, "uint8")), name="Xpad")
    ic, rh, rw, ie = (te.reduce_axis((0, e), nm) for e, nm in ((icb, "ic"), (kh, "rh"), (kw, "rw"), (4, "ie")))
    yp = te.compute((s.batch, ocb, oh, owp, 16), lambda n, o, h, v, e: te.sum(
        xp[n, ic, h * sh + rh * dh, v * sw + rw * dw, ie].astype("int32")
        * w[o, ic, rh, rw, e, ie].astype("int32"), axis=[ic, rh, rw, ie]), name="Ypad")
    y = te.compute((s.batch, ocb, oh, ow, 16), lambda n, o, h, v, e: yp[n, o, h, v, e], name="Y")
    return te.create_prim_func([x, w, y])


def schedule_conv(func):
    """Rows of CONV_COLS output pixels x 16 channels in registers, VNNI-tensorized, (n, oc, oh) parallel."""
    import tvm

    sch = tvm.s_tir.Schedule(func)
    blk = sch.get_sblock("Ypad")
    n, o, h, v, e, ic, rh, rw, ie = sch.get_loops(blk)
    vo, vi = sch.split(v, [None, CONV_COLS])
    sch.reorder(n, o, h, vo, ic, rh, rw, vi, e, ie)
    outer = sch.fuse(n, o, h)
    sch.parallel(outer)
    sch.reverse_compute_at(sch.get_sblock("Y"), vo)
    init = sch.decompose_reduction(blk, ic)
    sch.tensorize(e, INTRIN)
    sch.unroll(vi)
    sch.vectorize(sch.get_loops(init)[-1])
    pad = sch.get_sblock("Xpad")
    pn, pc, ph, *_ = sch.get_loops(pad)
    sch.parallel(sch.fuse(pn, pc, ph))
    sch.vectorize(sch.get_loops(pad)[-1])
    return sch


def build_conv(s: ConvShape, num_threads: int = 1) -> Kernel:
    """Kernel(pack_conv_data(x) u8, pack_conv_weight(w) s8) -> int32 NCHW16c conv output, exact."""
    if min(s.batch, s.in_channels, s.out_channels, s.height, s.width, *s.kernel, *s.stride, *s.dilation) < 1 \
            or min(s.padding) < 0 or min(s.out_hw()) < 1:
        raise InputError(f"conv shape has no output or a non-positive size: {s}")
    oh, ow = s.out_hw()
    return Kernel(_compile(schedule_conv(conv_func(s)), num_threads),
                  (s.batch, _ceil(s.out_channels, 16) // 16, oh, ow, 16))
