"""The int8 2-D conv kernel (NCHW u8 x packed OIHW{L}o{G}i weight -> NCHW int32), groups=1; see kernels.py.

The input is packed to NCHW{G}c (widened to isa.x_dtype, zero padded in space and channels) in the
kernel's first stage; the accumulator is NCHW{L}c in registers and is written back as NCHW.
"""

from __future__ import annotations

from onnx_hawq.compiler.kernels import ConvShape, Kernel, _ceil, compile_primfunc
from onnx_hawq.compiler.vnni import VNNI, Isa
from onnx_hawq.errors import InputError

CONV_COLS = 8        # output columns per register tile


def conv_func(s: ConvShape, isa: Isa = VNNI):
    """TE of the conv with spatial zero padding and the output width padded to CONV_COLS; a PrimFunc."""
    import tvm
    from tvm import te

    L, G = isa.lanes, isa.group
    oh, ow = s.out_hw()
    owp, icb, ocb = _ceil(ow, CONV_COLS), _ceil(s.in_channels, G) // G, _ceil(s.out_channels, L) // L
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = s.kernel, s.stride, s.padding, s.dilation
    hp, wp = (oh - 1) * sh + (kh - 1) * dh + 1, (owp - 1) * sw + (kw - 1) * dw + 1
    x = te.placeholder((s.batch, s.in_channels, s.height, s.width), "uint8", name="X")
    w = te.placeholder((ocb, icb, kh, kw, L, G), isa.w_dtype, name="W")
    inside = lambda c, h, v: tvm.tirx.all(c < s.in_channels, h >= ph, h < s.height + ph,  # noqa: E731
                                          v >= pw, v < s.width + pw)
    xp = te.compute((s.batch, icb, hp, wp, G), lambda n, c, h, v, e: tvm.tirx.if_then_else(
        inside(c * G + e, h, v), x[n, c * G + e, h - ph, v - pw].astype(isa.x_dtype),
        tvm.tirx.const(0, isa.x_dtype)), name="Xpad")
    ic, rh, rw, ie = (te.reduce_axis((0, e), nm) for e, nm in ((icb, "ic"), (kh, "rh"), (kw, "rw"), (G, "ie")))
    yp = te.compute((s.batch, ocb, oh, owp, L), lambda n, o, h, v, e: te.sum(
        xp[n, ic, h * sh + rh * dh, v * sw + rw * dw, ie].astype("int32")
        * w[o, ic, rh, rw, e, ie].astype("int32"), axis=[ic, rh, rw, ie]), name="Ypad")
    y = te.compute((s.batch, s.out_channels, oh, ow), lambda n, o, h, v: yp[n, o // L, h, v, o % L], name="Y")
    return te.create_prim_func([x, w, y])


def schedule_conv(func, isa: Isa = VNNI):
    """Rows of CONV_COLS output pixels x lanes channels in registers, tensorized, (n, oc, oh) parallel."""
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
    sch.tensorize(e, isa.intrin)
    sch.unroll(vi)
    sch.vectorize(sch.get_loops(init)[-1])
    pad = sch.get_sblock("Xpad")
    pn, pc, ph, *_ = sch.get_loops(pad)
    sch.parallel(sch.fuse(pn, pc, ph))
    return sch


def conv_primfunc(s: ConvShape, isa: Isa = VNNI):
    """The scheduled conv PrimFunc (X u8 NCHW, packed W) -> int32 NCHW."""
    if min(s.batch, s.in_channels, s.out_channels, s.height, s.width, *s.kernel, *s.stride, *s.dilation) < 1 \
            or min(s.padding) < 0 or min(s.out_hw()) < 1:
        raise InputError(f"conv shape has no output or a non-positive size: {s}")
    return schedule_conv(conv_func(s, isa), isa).mod["main"]


def build_conv(s: ConvShape, num_threads: int = 1, isa: Isa = VNNI) -> Kernel:
    """Kernel(x u8 NCHW, pack_conv_weight(w, isa)) -> int32 NCHW conv output, exact."""
    return Kernel(compile_primfunc(conv_primfunc(s, isa), isa, num_threads),
                  (s.batch, s.out_channels, *s.out_hw()))
