"""Hand-scheduled int8 (u8 x s8 -> int32) kernels in TVM TE/TIR: dense and 2-D conv (groups=1).

Each kernel tensorizes its innermost `isa.lanes` output lanes x `isa.group` reduction elements
with an intrinsic of `vnni.py` (VNNI vpdpbusd, or AVX2 vpmaddwd on int16-widened operands). Shapes
that do not divide the tiles are padded with zeros inside the kernel (K to the group, N/channels to
the lanes, rows/columns to the register tile), so the int32 results equal numpy's exactly. Weights
are packed once with numpy (`pack_dense_weight`, `pack_conv_weight`); activations and outputs keep
the model's layout (row-major [M, K] / NCHW), the kernels pack and unpack them in their own stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_hawq.compiler.vnni import VNNI, Isa, isa_target
from onnx_hawq.errors import InputError


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def _blocks(nblocks: int, most: int) -> int:
    """Lane blocks per register tile: the largest power of two <= `most` dividing `nblocks`."""
    return next(b for b in (4, 2, 1) if b <= most and nblocks % b == 0)


def _check_weight(w: np.ndarray, ndim: int, what: str) -> None:
    if w.ndim != ndim or w.dtype != np.int8:
        raise InputError(f"{what} weight must be int8 with {ndim} dimensions, got {w.dtype} {w.shape}")


def pack_dense_weight(w: np.ndarray, isa: Isa = VNNI) -> np.ndarray:
    """int8 [N, K] -> zero-padded [N/L, K/G, L, G] of isa.w_dtype (B[n, k] at [n//L, k//G, n%L, k%G])."""
    _check_weight(w, 2, "dense")
    (n, k), L, G = w.shape, isa.lanes, isa.group
    wp = np.zeros((_ceil(n, L), _ceil(k, G)), isa.w_dtype)
    wp[:n, :k] = w
    return np.ascontiguousarray(wp.reshape(wp.shape[0] // L, L, wp.shape[1] // G, G).transpose(0, 2, 1, 3))


def pack_conv_weight(w: np.ndarray, isa: Isa = VNNI) -> np.ndarray:
    """int8 OIHW -> zero-padded [O/L, I/G, KH, KW, L, G] of isa.w_dtype (OIHW{L}o{G}i)."""
    _check_weight(w, 4, "conv")
    (o, i, kh, kw), L, G = w.shape, isa.lanes, isa.group
    wp = np.zeros((_ceil(o, L), _ceil(i, G), kh, kw), isa.w_dtype)
    wp[:o, :i] = w
    wp = wp.reshape(wp.shape[0] // L, L, wp.shape[1] // G, G, kh, kw)
    return np.ascontiguousarray(wp.transpose(0, 2, 4, 5, 1, 3))


@dataclass(frozen=True)
class Kernel:
    """A built kernel: `fn(*tvm tensors)` with the out tensor last, and that out tensor's shape."""

    fn: object
    out_shape: tuple

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Run on numpy inputs (weights already packed); return the int32 output as numpy."""
        import tvm

        dev = tvm.cpu()
        args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
        out = tvm.runtime.tensor(np.zeros(self.out_shape, np.int32), dev)
        self.fn(*args, out)
        return out.numpy()


def compile_primfunc(func, isa: Isa, num_threads: int):
    """The callable of one scheduled PrimFunc built for `isa` with `num_threads` threads."""
    import tvm

    return tvm.compile(tvm.IRModule({"main": func}), target=isa_target(isa, num_threads))["main"]


def dense_func(m: int, n: int, k: int, isa: Isa = VNNI):
    """TE for C[M, N] = A[M, K] (u8) x B^T with B packed by pack_dense_weight, int32; a PrimFunc."""
    import tvm
    from tvm import te

    L, G = isa.lanes, isa.group
    mp, nb, kp = _ceil(m, isa.dense_rows), _ceil(n, L) // L, _ceil(k, G)
    a = te.placeholder((m, k), "uint8", name="A")
    b = te.placeholder((nb, kp // G, L, G), isa.w_dtype, name="B")
    zero = tvm.tirx.const(0, isa.x_dtype)
    ap = te.compute((mp, kp), lambda i, j: tvm.tirx.if_then_else(
        tvm.tirx.all(i < m, j < k), a[i, j].astype(isa.x_dtype), zero), name="Apad")
    r = te.reduce_axis((0, kp), "k")
    cp = te.compute((mp, nb * L), lambda i, j: te.sum(
        ap[i, r].astype("int32") * b[j // L, r // G, j % L, r % G].astype("int32"), axis=r), name="Cpad")
    c = te.compute((m, n), lambda i, j: cp[i, j], name="C")
    return te.create_prim_func([a, b, c])


def schedule_dense(func, n: int, isa: Isa = VNNI):
    """Register-tiled (rows x lanes*blocks), tensorized, row/column-tile parallel schedule."""
    import tvm

    sch = tvm.s_tir.Schedule(func)
    blk = sch.get_sblock("Cpad")
    i, j, r = sch.get_loops(blk)
    io, ii = sch.split(i, [None, isa.dense_rows])
    jo, jb, ji = sch.split(j, [None, _blocks(_ceil(n, isa.lanes) // isa.lanes, isa.max_blocks), isa.lanes])
    ro, ri = sch.split(r, [None, isa.group])
    sch.reorder(io, jo, ro, ii, jb, ji, ri)
    tile = sch.fuse(io, jo)
    sch.parallel(tile)
    sch.reverse_compute_at(sch.get_sblock("C"), tile)
    sch.compute_at(sch.get_sblock("Apad"), tile)
    init = sch.decompose_reduction(blk, ro)
    sch.tensorize(ji, isa.intrin)
    sch.unroll(ii)
    sch.unroll(jb)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch


def dense_primfunc(m: int, n: int, k: int, isa: Isa = VNNI):
    """The scheduled dense PrimFunc (A u8 [M, K], packed B) -> int32 [M, N]."""
    if min(m, n, k) < 1:
        raise InputError(f"dense shape must be positive, got M={m} N={n} K={k}")
    return schedule_dense(dense_func(m, n, k, isa), n, isa).mod["main"]


def build_dense(m: int, n: int, k: int, num_threads: int = 1, isa: Isa = VNNI) -> Kernel:
    """Kernel(A u8 [M, K], pack_dense_weight(W, isa)) -> int32 [M, N] = A @ W.T, exact."""
    return Kernel(compile_primfunc(dense_primfunc(m, n, k, isa), isa, num_threads), (m, n))


@dataclass(frozen=True)
class ConvShape:
    """A 2-D conv: batch, in/out channels, input height/width, kernel, stride, padding, dilation."""

    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple = (3, 3)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)

    def out_hw(self) -> tuple:
        """Output (height, width)."""
        return tuple((x + 2 * p - d * (kk - 1) - 1) // s + 1 for x, p, d, kk, s in zip(
            (self.height, self.width), self.padding, self.dilation, self.kernel, self.stride))

    def ops(self) -> int:
        """2 x multiply-accumulates."""
        oh, ow = self.out_hw()
        return 2 * self.batch * self.out_channels * oh * ow * self.in_channels * self.kernel[0] * self.kernel[1]
