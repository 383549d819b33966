"""AMX-INT8 kernels (tdpbusd: u8 x s8 -> int32 on 16x64-byte tiles) for int8 conv2d and dense in TVM TIR.

TVM has no AMX intrinsics; the kernels call LLVM's tile intrinsics directly (`llvm.x86.tileloadd64`,
`tdpbusd`, `tilestored64`, `ldtilecfg`) as an implicit GEMM: the activation is copied once into a
zero-padded channels-last buffer (channels to 64, output width to 16; a strided 1x1 conv is
subsampled there), so the 16 rows of an A tile are 16 neighbouring output pixels at a constant
stride and no im2col buffer is needed. Each block multiplies one A tile by `nt` weight tiles (16
output channels each) over kh x kw x C/64 steps; blocks are grouped in chunks that load the tile
configuration once. Every kernel first asks Linux for the AMX tile state (arch_prctl
ARCH_REQ_XCOMP_PERM, a no-op once granted), so an exported library runs in any process.
Weights are packed by numpy: [O/16, KH, KW, C/64, 16 (k/4), 64 (16 channels x 4 k)]. Results equal
numpy's exactly for any shape (padding is zeros and is cropped).
"""

from __future__ import annotations

import numpy as np

from onnx_hawq.compiler.kernels import ConvShape, _ceil, _check_weight

SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18
MIN_CHANNELS = 32  # below this, padding the reduction to 64 wastes more than half of every tile


def tile_config() -> np.ndarray:
    """The 64-byte ldtilecfg block: palette 1, eight tiles of 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    cfg[16:32:2] = 64
    cfg[48:56] = 16
    return cfg


def _tiles(wp: np.ndarray) -> np.ndarray:
    """int8 [O/16*16, K/64*64, KH, KW] -> [O/16, KH, KW, K/64, 16, 64] tdpbusd B tiles (4 k per channel)."""
    op, cp, kh, kw = wp.shape
    tiles = wp.reshape(op // 16, 16, cp // 64, 16, 4, kh, kw).transpose(0, 5, 6, 2, 3, 1, 4)
    return np.ascontiguousarray(tiles.reshape(op // 16, kh, kw, cp // 64, 16, 64))


def pack_amx_conv_weight(w: np.ndarray, s: ConvShape | None = None) -> np.ndarray:
    """int8 OIHW -> zero-padded B tiles: [O/16, KH, KW, I/64, 16, 64], or for a shallow conv (`packs(s)`)
    [O/16, KH, 1, steps, 16, 64] whose reduction runs over (kw, channel) pairs, channel fastest."""
    _check_weight(w, 4, "conv")
    o, c, kh, kw = w.shape
    if s is not None and packs(s):
        cg = _pow2(c)
        wk = np.zeros((_ceil(o, 16), _steps(s) * 64, kh, 1), np.int8)
        for q in range(kw):
            wk[:o, q * cg:q * cg + c, :, 0] = w[:, :, :, q]
        return _tiles(wk)
    wp = np.zeros((_ceil(o, 16), _ceil(c, 64), kh, kw), np.int8)
    wp[:o, :c] = w
    return _tiles(wp)


def pack_amx_dense_weight(w: np.ndarray) -> np.ndarray:
    """int8 [N, K] -> the conv packing of the equivalent 1x1 conv ([N/16, 1, 1, K/64, 16, 64])."""
    _check_weight(w, 2, "dense")
    return pack_amx_conv_weight(w[:, :, None, None])


def _pow2(c: int) -> int:
    return 1 << max(c - 1, 0).bit_length()


def packs(s: ConvShape) -> bool:
    """True for a conv too shallow for 64-channel steps: its A tiles then span (kw, channel) runs of the
    channels-last input (channels padded to a power of two), which needs unit column dilation."""
    return s.in_channels < MIN_CHANNELS and s.dilation[1] == 1 and s.kernel[1] > 1


def _steps(s: ConvShape) -> int:
    return -(-s.kernel[1] * _pow2(s.in_channels) // 64)


def conv_fits(s: ConvShape) -> bool:
    return s.in_channels >= MIN_CHANNELS or packs(s)


def dense_fits(k: int) -> bool:
    return k >= MIN_CHANNELS


def _geometry(s: ConvShape) -> dict:
    """Buffer extents and block counts of the implicit GEMM for `s` (1x1 strided convs subsampled)."""
    (oh, ow), (kh, kw) = s.out_hw(), s.kernel
    sub = s.stride if s.kernel == (1, 1) else (1, 1)
    stride = (1, 1) if s.kernel == (1, 1) else s.stride
    owp, packed = _ceil(ow, 16), packs(s)
    cp = _pow2(s.in_channels) if packed else _ceil(s.in_channels, 64)
    reach = _steps(s) * 64 // cp if packed else (kw - 1) * s.dilation[1] + 1  # input columns one row reads
    g = dict(oh=oh, ow=ow, owp=owp, cp=cp, op=_ceil(s.out_channels, 16), sub=sub, stride=stride,
             hp=(oh - 1) * stride[0] + (kh - 1) * s.dilation[0] + 1, wq=(owp - 1) * stride[1] + reach,
             groups=s.batch * oh * (owp // 16), kwl=1 if packed else kw, cb=_steps(s) if packed else cp // 64,
             u_px=64 // cp if packed else 0, u_ch=0 if packed else 64)
    ob16 = g["op"] // 16
    g["nt"] = next(t for t in (4, 2, 1) if ob16 % t == 0)
    g["nblk"] = g["groups"] * (ob16 // g["nt"])
    g["nchunks"] = min(g["nblk"], 16)
    g["per_chunk"] = -(-g["nblk"] // g["nchunks"])
    return g


def _tile(op: str, *args):
    from tvm.script import tirx as T

    return T.evaluate(T.call_llvm_intrin("void", "llvm.x86." + op, *args))


def amx_primfunc(s: ConvShape, dense: bool = False):
    """The AMX PrimFunc (X, packed W, tile_config(), Y int32): NCHW conv2d of `s`, or with `dense` the
    matmul Y[M, N] = X[M, K] @ W.T given as s = ConvShape(1, K, N, 1, M, (1, 1))."""
    from tvm.script import tirx as T

    g = _geometry(s)
    n, c, h, w, o = s.batch, s.in_channels, s.height, s.width, s.out_channels
    (kh, kw), (ph, pw), (dh, dw) = s.kernel, s.padding, s.dilation
    (oh, ow, owp, cp, op), (uh, uw), (sh, sw) = (g[k] for k in ("oh", "ow", "owp", "cp", "op")), g["sub"], g["stride"]
    hp, wq, nt, nblk, per_chunk = g["hp"], g["wq"], g["nt"], g["nblk"], g["per_chunk"]
    ngroups, owg, cb, ob16, kwl = g["groups"], owp // 16, g["cb"], op // 16, g["kwl"]
    u_px, u_ch = g["u_px"], g["u_ch"]
    x_shape, y_shape = ((w, c), (ow, o)) if dense else ((n, c, h, w), (n, o, oh, ow))
    y_all = tuple(slice(0, d) for d in y_shape)

    def pix(i):  # (batch, output row, first output column) of block i's A tile
        gi = i % ngroups
        return gi // (oh * owg), gi // owg % oh, gi % owg * 16

    def och(i, t):  # the 16-channel output tile t of block i
        return i // ngroups * nt + t

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer(x_shape, "uint8"), W: T.Buffer((ob16, kh, kwl, cb, 16, 64), "int8"),
             CFG: T.Buffer((64,), "uint8"), Y: T.Buffer(y_shape, "int32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        Xp = T.alloc_buffer((n, hp, wq, cp), "uint8")
        S = T.alloc_buffer((g["nchunks"], nt, 16, 16), "int32")  # each chunk's C tiles, copied out from L1
        T.evaluate(T.call_extern("int64", "syscall", T.int64(SYS_ARCH_PRCTL), T.int64(ARCH_REQ_XCOMP_PERM),
                                 T.int64(XFEATURE_XTILEDATA)))
        with T.sblock("live"):  # starts S's live range before Xp's: StorageRewrite must not fold one into the other
            S[0, 0, 0, 0] = 0
        for by in T.parallel(n * hp):
            for x in T.serial(wq):
                for ch in T.vectorized(cp):
                    with T.sblock("pad"):
                        vb, vy = T.axis.spatial(n, by // hp), T.axis.spatial(hp, by % hp)
                        vx, vc = T.axis.spatial(wq, x), T.axis.spatial(cp, ch)
                        if dense:
                            Xp[vb, vy, vx, vc] = T.if_then_else(vx < w and vc < c, X[T.min(vx, w - 1),
                                                                                     T.min(vc, c - 1)], T.uint8(0))
                        else:
                            Xp[vb, vy, vx, vc] = T.if_then_else(
                                vy * uh >= ph and vy * uh < h + ph and vx * uw >= pw and vx * uw < w + pw and vc < c,
                                X[vb, T.min(vc, c - 1), T.max(T.min(vy * uh - ph, h - 1), 0),
                                  T.max(T.min(vx * uw - pw, w - 1), 0)], T.uint8(0))
        with T.sblock("amx"):
            T.reads(Xp[0:n, 0:hp, 0:wq, 0:cp], W[0:ob16, 0:kh, 0:kwl, 0:cb, 0:16, 0:64], CFG[0:64])
            T.writes(S[0:g["nchunks"], 0:nt, 0:16, 0:16], Y[y_all])
            for chunk in T.parallel(g["nchunks"]):
                _tile("ldtilecfg", T.address_of(CFG[0]))
                for bi in T.serial(per_chunk):
                    if chunk * per_chunk + bi < nblk:
                        for t in T.unroll(nt):
                            _tile("tilezero", T.int8(t))
                        for r, q, u in T.grid(kh, kwl, cb):
                            _tile("tileloadd64", T.int8(4), Xp.access_ptr("r", offset=Xp.offset_of([
                                pix(chunk * per_chunk + bi)[0], pix(chunk * per_chunk + bi)[1] * sh + r * dh,
                                pix(chunk * per_chunk + bi)[2] * sw + q * dw + u * u_px, u * u_ch])[0]),
                                  T.int64(sw * cp))
                            for t in T.unroll(nt):
                                _tile("tileloadd64", T.int8(5 + t % 3), W.access_ptr("r", offset=W.offset_of(
                                    [och(chunk * per_chunk + bi, t), r, q, u, 0, 0])[0]), T.int64(64))
                                _tile("tdpbusd", T.int8(t), T.int8(4), T.int8(5 + t % 3))
                        for t in T.unroll(nt):
                            _tile("tilestored64", T.int8(t), S.access_ptr("w", offset=S.offset_of([chunk, t, 0, 0])[0]),
                                  T.int64(64))
                        if dense:
                            for t, i in T.grid(nt, 16):
                                for j in T.vectorized(16):
                                    if pix(chunk * per_chunk + bi)[2] + i < ow and \
                                            och(chunk * per_chunk + bi, t) * 16 + j < o:
                                        Y[pix(chunk * per_chunk + bi)[2] + i,
                                          och(chunk * per_chunk + bi, t) * 16 + j] = S[chunk, t, i, j]
                        else:
                            for t, j in T.grid(nt, 16):
                                for i in T.vectorized(16):
                                    if pix(chunk * per_chunk + bi)[2] + i < ow and \
                                            och(chunk * per_chunk + bi, t) * 16 + j < o:
                                        Y[pix(chunk * per_chunk + bi)[0], och(chunk * per_chunk + bi, t) * 16 + j,
                                          pix(chunk * per_chunk + bi)[1], pix(chunk * per_chunk + bi)[2] + i] = \
                                            S[chunk, t, i, j]
                _tile("tilerelease")

    return main.with_attr("tirx.is_scheduled", True)


def dense_shape(m: int, n: int, k: int) -> ConvShape:
    """The 1x1 conv that `amx_primfunc(..., dense=True)` computes Y[M, N] = X[M, K] @ W.T as."""
    return ConvShape(1, k, n, 1, m, (1, 1))
