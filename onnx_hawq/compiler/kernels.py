"""Hand-scheduled AVX512-VNNI u8 x s8 -> int32 kernels in TVM TE/TIR: dense and 2-D conv (groups=1).

Each kernel tensorizes its innermost 16 output lanes x 4 reduction bytes with the fixed
`dot_16x4_vnni` intrinsic of `vnni.py` (vpdpbusd). Shapes that do not divide the tiles are padded
with zeros inside the kernel (K to 4, N/channels to 16, rows/columns to the register tile), so the
int32 results equal numpy's exactly. Weights are packed once with numpy (`pack_dense_weight`,
`pack_conv_weight`); activations of the conv are NCHW4c (`pack_conv_data`), outputs NCHW16c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_hawq.compiler.vnni import INTRIN, vnni_target
from onnx_hawq.errors import InputError

DENSE_ROWS = 6       # rows of A per register tile
CONV_COLS = 8        # output columns per register tile


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def _lanes(np16: int) -> int:
    """16-lane blocks per register tile: the largest of 4, 2, 1 dividing `np16`."""
    return next(b for b in (4, 2, 1) if np16 % b == 0)


def pack_dense_weight(w: np.ndarray) -> np.ndarray:
    """int8 [N, K] -> zero-padded int8 [ceil(N/16), ceil(K/4), 16, 4] (B[n, k] at [n//16, k//4, n%16, k%4])."""
    if w.ndim != 2 or w.dtype != np.int8:
        raise InputError(f"dense weight must be int8 [N, K], got {w.dtype} {w.shape}")
    n, k = w.shape
    wp = np.zeros((_ceil(n, 16), _ceil(k, 4)), np.int8)
    wp[:n, :k] = w
    return np.ascontiguousarray(wp.reshape(wp.shape[0] // 16, 16, wp.shape[1] // 4, 4).transpose(0, 2, 1, 3))


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """int8 OIHW -> zero-padded int8 [ceil(O/16), ceil(I/4), KH, KW, 16, 4] (OIHW16o4i)."""
    if w.ndim != 4 or w.dtype != np.int8:
        raise InputError(f"conv weight must be int8 OIHW, got {w.dtype} {w.shape}")
    o, i, kh, kw = w.shape
    wp = np.zeros((_ceil(o, 16), _ceil(i, 4), kh, kw), np.int8)
    wp[:o, :i] = w
    wp = wp.reshape(wp.shape[0] // 16, 16, wp.shape[1] // 4, 4, kh, kw)
    return np.ascontiguousarray(wp.transpose(0, 2, 4, 5, 1, 3))


def pack_conv_data(x: np.ndarray) -> np.ndarray:
    """uint8 NCHW -> zero-padded uint8 NCHW4c [N, ceil(C/4), H, W, 4]."""
    if x.ndim != 4 or x.dtype != np.uint8:
        raise InputError(f"conv input must be uint8 NCHW, got {x.dtype} {x.shape}")
    n, c, h, w = x.shape
    xp = np.zeros((n, _ceil(c, 4), h, w), np.uint8)
    xp[:, :c] = x
    return np.ascontiguousarray(xp.reshape(n, -1, 4, h, w).transpose(0, 1, 3, 4, 2))


def unpack_conv_output(y: np.ndarray, channels: int) -> np.ndarray:
    """int32 NCHW16c [N, C/16, H, W, 16] -> NCHW with the first `channels` channels."""
    n, cb, h, w, _ = y.shape
    return np.ascontiguousarray(y.transpose(0, 1, 4, 2, 3).reshape(n, cb * 16, h, w)[:, :channels])


@dataclass(frozen=True)
class Kernel:
    """A built kernel: `fn(*tvm tensors)` with the out tensor last, and that out tensor's shape."""

    fn: object
    out_shape: tuple

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """Run on numpy inputs (already packed); return the int32 output as numpy."""
        import tvm

        dev = tvm.cpu()
        args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
        out = tvm.runtime.tensor(np.zeros(self.out_shape, np.int32), dev)
        self.fn(*args, out)
        return out.numpy()


def _compile(sch, num_threads: int):
    import tvm

    return tvm.compile(sch.mod, target=vnni_target(num_threads))["main"]


def dense_func(m: int, n: int, k: int):
    """TE for C[M, N] = A[M, K] (u8) x B^T with B packed [N/16, K/4, 16, 4] (s8), int32; a PrimFunc."""
    import tvm
    from tvm import te

    mp, np16, kp = _ceil(m, DENSE_ROWS), _ceil(n, 16) // 16, _ceil(k, 4)
    a = te.placeholder((m, k), "uint8", name="A")
    b = te.placeholder((np16, kp // 4, 16, 4), "int8", name="B")
    zero = tvm.tirx.const(0, "uint8")
    ap = te.compute((mp, kp), lambda i, j: tvm.tirx.if_then_else(tvm.tirx.all(i < m, j < k), a[i, j], zero),
                    name="Apad")
    r = te.reduce_axis((0, kp), "k")
    cp = te.compute((mp, np16 * 16), lambda i, j: te.sum(
        ap[i, r].astype("int32") * b[j // 16, r // 4, j % 16, r % 4].astype("int32"), axis=r), name="Cpad")
    c = te.compute((m, n), lambda i, j: cp[i, j], name="C")
    return te.create_prim_func([a, b, c])


def schedule_dense(func, n: int):
    """Register-tiled (6 rows x 16*L lanes), VNNI-tensorized, row/column-tile parallel schedule."""
    import tvm

    sch = tvm.s_tir.Schedule(func)
    blk = sch.get_sblock("Cpad")
    i, j, r = sch.get_loops(blk)
    io, ii = sch.split(i, [None, DENSE_ROWS])
    jo, jb, ji = sch.split(j, [None, _lanes(_ceil(n, 16) // 16), 16])
    ro, ri = sch.split(r, [None, 4])
    sch.reorder(io, jo, ro, ii, jb, ji, ri)
    tile = sch.fuse(io, jo)
    sch.parallel(tile)
    sch.reverse_compute_at(sch.get_sblock("C"), tile)
    sch.compute_at(sch.get_sblock("Apad"), tile)
    init = sch.decompose_reduction(blk, ro)
    sch.tensorize(ji, INTRIN)
    sch.unroll(ii)
    sch.unroll(jb)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch


def build_dense(m: int, n: int, k: int, num_threads: int = 1) -> Kernel:
    """Kernel(A u8 [M, K], pack_dense_weight(W) s8) -> int32 [M, N] = A @ W.T, exact."""
    if min(m, n, k) < 1:
        raise InputError(f"dense shape must be positive, got M={m} N={n} K={k}")
    return Kernel(_compile(schedule_dense(dense_func(m, n, k), n), num_threads), (m, n))


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
