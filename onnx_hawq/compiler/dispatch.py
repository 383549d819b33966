"""Relax pass: int8 conv2d / matmul calls -> call_tir of the tensorized kernels (imports tvm).

Matches `nn.conv2d` (NCHW/OIHW, groups=1) and `matmul` whose data is uint8, whose weight is an int8
constant and whose out_dtype is int32 (what the converters emit), with static shapes. The weight
is packed at build time into the ISA's layout; activations stay NCHW / row-major (the kernels pack
them). With AMX, calls that `amx.conv_fits` / `amx.dense_fits` accept take the tile kernels of
amx.py, the others the VNNI kernels. On AVX2, a weight whose adjacent pairs fit int16 against any
uint8 input takes the u8 x s8 kernel (vpmaddubsw), any other the int16 one. Any other call keeps
TVM's lowering. One PrimFunc per distinct shape and ISA.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from onnx_hawq.compiler import amx
from onnx_hawq.compiler.kernels import ConvShape, dense_primfunc, pack_conv_weight, pack_dense_weight
from onnx_hawq.compiler.kernels_conv import conv_primfunc
from onnx_hawq.compiler.vnni import AMX, AVX2, AVX2_U8, VNNI, Isa, pairs_fit_int16

OPAQUE = 8  # relay/relax OpPatternKind kOpaque
CONV, MATMUL = tvm.ir.Op.get("relax.nn.conv2d"), tvm.ir.Op.get("relax.matmul")


def _static(expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def _int8_operands(call) -> tuple[list[int], np.ndarray] | None:
    """(data shape, weight) when `call` is u8 data x int8 constant weight -> int32 with static shapes."""
    x, w = call.args[0], call.args[1]
    if str(call.attrs.out_dtype) != "int32" or not isinstance(w, tvm.ir.GenericConst) or str(x.ty.dtype) != "uint8":
        return None
    value, shape = w.value.numpy(), _static(x)
    return (shape, value) if value.dtype == np.int8 and shape is not None else None


def conv_shape(call, xshape: list[int], w: np.ndarray) -> ConvShape | None:
    """The ConvShape of a plain NCHW/OIHW groups=1 conv2d call with symmetric padding, else None."""
    a = call.attrs
    pads = [int(p) for p in a.padding]
    if int(a.groups) != 1 or str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW" \
            or str(a.out_layout) != "NCHW" or pads[:2] != pads[2:] or len(xshape) != 4:
        return None
    n, c, h, wd = xshape
    return ConvShape(n, c, w.shape[0], h, wd, tuple(w.shape[2:]), tuple(int(s) for s in a.strides),
                     tuple(pads[:2]), tuple(int(d) for d in a.dilation))


@relax.expr_functor.mutator
class Int8Dispatch(relax.PyExprMutator):
    """Rewrites matched calls of one function; kernels are added to the module once per shape."""

    def __init__(self, mod, isa: Isa):
        super().__init__(mod)
        self.isa, self.funcs = isa, {}

    def _isa(self, w: np.ndarray, pack) -> Isa:
        """The vector kernels' ISA: VNNI under AMX; AVX2_U8 instead of AVX2 where the weight (packed by
        `pack`) cannot saturate vpmaddubsw."""
        if self.isa is AMX:
            return VNNI
        return AVX2_U8 if self.isa is AVX2 and pairs_fit_int16(pack(w, AVX2_U8)) else self.isa

    def _amx(self, x, s: ConvShape, packed: np.ndarray, out_shape, dense: bool):
        """call_tir of the AMX kernel for `s` on (x, packed weight, tile config)."""
        gv = self._kernel(("dense" if dense else "conv", s), AMX, lambda: amx.amx_primfunc(s, dense))
        args = [x, relax.const(packed), relax.const(amx.tile_config())]
        return relax.call_tir(gv, args, relax.TensorType(out_shape, "int32"))

    def _kernel(self, key, isa: Isa, make):
        key = (*key, isa.name)
        if key not in self.funcs:
            func = make().with_attrs({"tirx.is_scheduled": True, "op_pattern": OPAQUE})  # FuseOps leaves it alone
            self.funcs[key] = self.builder_.add_func(func, f"hawq_{isa.name}_{key[0]}")
        return self.funcs[key]

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op not in (CONV, MATMUL):
            return call
        found = _int8_operands(call)
        if found is None:
            return call
        return self._conv(call, *found) if call.op == CONV else self._matmul(call, *found)

    def _conv(self, call, xshape, w):
        s = conv_shape(call, xshape, w)
        if s is None:
            return call
        if self.isa is AMX and amx.conv_fits(s):
            out = (s.batch, s.out_channels, *s.out_hw())
            return self._amx(call.args[0], s, amx.pack_amx_conv_weight(w, s), out, dense=False)
        isa = self._isa(w, pack_conv_weight)
        gv = self._kernel(("conv", s), isa, lambda: conv_primfunc(s, isa))
        packed = relax.const(pack_conv_weight(w, isa))
        return relax.call_tir(gv, [call.args[0], packed], relax.TensorType((s.batch, s.out_channels, *s.out_hw()),
                                                                             "int32"))

    def _matmul(self, call, xshape, w):
        if w.ndim != 2 or len(xshape) < 1:
            return call
        (k, n), m, w_nk = w.shape, int(np.prod(xshape[:-1])), np.ascontiguousarray(w.T)
        x = call.args[0] if len(xshape) == 2 else self.builder_.emit(relax.op.reshape(call.args[0], (m, k)))
        if self.isa is AMX and amx.dense_fits(k):
            y = self._amx(x, amx.dense_shape(m, n, k), amx.pack_amx_dense_weight(w_nk), (m, n), dense=True)
        else:
            isa = self._isa(w_nk, pack_dense_weight)
            gv = self._kernel(("dense", m, n, k), isa, lambda: dense_primfunc(m, n, k, isa))
            y = relax.call_tir(gv, [x, relax.const(pack_dense_weight(w_nk, isa))], relax.TensorType((m, n), "int32"))
        return y if len(xshape) == 2 else relax.op.reshape(self.builder_.emit(y), (*xshape[:-1], n))


def int8_dispatch(isa: Isa):
    """The module pass that routes int8 conv2d / matmul calls of every Relax function to `isa` kernels."""

    @tvm.transform.module_pass(opt_level=0, name="HawqInt8Dispatch")
    def dispatch(mod, _ctx):
        mutator = Int8Dispatch(mod, isa)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return mutator.builder_.get()

    return dispatch
