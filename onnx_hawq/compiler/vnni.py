"""x86 int8 dot-product support for TVM's CPU (llvm) target: host detection, ISAs, fixed intrinsics.

Two tensor intrinsics of the form C[i] += A[k] * B[i, k] (int32 lanes i, k the reduction group):
- `hawq_dot_16x4_vnni` (AVX512-VNNI, vpdpbusd: u8 x s8, 16 lanes x 4 bytes). The wheel's stock
  `dot_16x4_vnni` passes int32x16 operands to `llvm.x86.avx512.vpdpbusd.512`, which LLVM 22 rejects
  (it wants <64 x i8>); ours reinterprets to uint8x64/int8x64.
- `hawq_dot_8x2_avx2` (AVX2, vpmaddwd: int16 x int16, 8 lanes x 2), exact for u8 x s8 operands
  widened to int16.
- `hawq_dot_8x4_avx2u8` (AVX2, vpmaddubsw then vpmaddwd by ones: u8 x s8, 8 lanes x 4), twice the
  work per instruction, exact only while no pair of adjacent products leaves int16 (vpmaddubsw
  saturates): `pairs_fit_int16` checks a packed weight; our quantizer's |w| <= 64 cap guarantees it.
The stock module is not imported: importing any of `tvm.s_tir.tensor_intrin` loads every target's
intrinsics (~40-80 s). Bodies are one nested expression on purpose: a `x = expr` statement in tirx
TVMScript becomes a stack buffer and makes the kernels ~4x slower.
"""

from __future__ import annotations

import dataclasses
import pathlib

CPUINFO = pathlib.Path("/proc/cpuinfo")


@dataclasses.dataclass(frozen=True)
class Isa:
    """An int8 dot-product instruction set: intrinsic, lanes x group, operand dtypes, register tiles."""

    name: str
    intrin: str
    flag: str            # the /proc/cpuinfo flag that enables it
    feature: str         # the LLVM CPU feature of that flag
    mcpu: str            # an -mcpu with the feature, for cross-compiling from a host without it
    lanes: int           # int32 accumulator lanes per instruction
    group: int           # reduction elements per lane per instruction
    x_dtype: str         # activation operand dtype (uint8 is widened when needed)
    w_dtype: str         # packed weight dtype
    dense_rows: int      # rows of A per dense register tile
    max_blocks: int      # most lane blocks per dense register tile


VNNI = Isa("vnni", "hawq_dot_16x4_vnni", "avx512_vnni", "avx512vnni", "icelake-server", 16, 4, "uint8", "int8", 6, 4)
# AMX-INT8: the tile kernels of amx.py where amx.conv_fits / dense_fits accept a call, the VNNI ones elsewhere
AMX = Isa("amx", VNNI.intrin, "amx_int8", "amx-int8", "sapphirerapids", 16, 4, "uint8", "int8", 6, 4)
AVX2 = Isa("avx2", "hawq_dot_8x2_avx2", "avx2", "avx2", "haswell", 8, 2, "int16", "int16", 4, 2)
AVX2_U8 = Isa("avx2u8", "hawq_dot_8x4_avx2u8", "avx2", "avx2", "haswell", 8, 4, "uint8", "int8", 4, 2)
ISAS = {i.name: i for i in (AMX, VNNI, AVX2)}
AMX_MATTR = ["+amx-tile", "+amx-int8"]
VNNI_INTRIN = VNNI.intrin


def _flags(cpuinfo: pathlib.Path) -> list[list[str]]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    return [line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")]


def host_has(flag: str, cpuinfo: pathlib.Path = CPUINFO) -> bool:
    """True when every listed CPU of `cpuinfo` has `flag`; False when it cannot be read."""
    flags = _flags(cpuinfo)
    return bool(flags) and all(flag in f for f in flags)


def host_has_vnni(cpuinfo: pathlib.Path = CPUINFO) -> bool:
    return host_has(VNNI.flag, cpuinfo)


def host_has_amx(cpuinfo: pathlib.Path = CPUINFO) -> bool:
    """True when the CPUs of `cpuinfo` list amx_int8 (the tile kernels of amx.py)."""
    return host_has("amx_int8", cpuinfo)


def host_isa(cpuinfo: pathlib.Path = CPUINFO) -> Isa | None:
    """The best int8 ISA of this host: AMX (with VNNI), else VNNI, else AVX2, else None."""
    needs = {AMX: (AMX.flag, VNNI.flag)}  # the AMX route keeps VNNI kernels for shallow reductions
    return next((i for i in (AMX, VNNI, AVX2) if all(host_has(f, cpuinfo) for f in needs.get(i, (i.flag,)))), None)


def isa_target(isa: Isa, num_cores: int = 1, mcpu: str | None = None):
    """The llvm tvm.target.Target for `isa`: the host's -mcpu when `isa` is the host's best, else isa.mcpu.

    (The kernels are chosen from the -mcpu's features, so AVX2 on a VNNI host must name an AVX2-only CPU.
    LLVM may name an AMX host's CPU without AMX, so AMX targets add the tile features explicitly.)
    """
    import tvm

    if mcpu is None:
        mcpu = tvm.target.codegen.llvm_get_system_cpu() if host_isa() is isa else isa.mcpu
    extra = {"mattr": AMX_MATTR} if isa is AMX else {}
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": int(num_cores), **extra})


def vnni_target(num_cores: int = 1, mcpu: str | None = None):
    return isa_target(VNNI, num_cores, mcpu)


def _desc(isa: Isa):
    """C[i] += A[k] * B[i, k] over isa.lanes x isa.group (the stock description's form)."""
    from tvm.script import tirx as T

    L, G, xd, wd = isa.lanes, isa.group, isa.x_dtype, isa.w_dtype

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((G,), xd, offset_factor=1), B: T.Buffer((L, G), wd, offset_factor=1),
             C: T.Buffer((L,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:L], A[0:G], B[0:L, 0:G])
            T.writes(C[0:L])
            for i in T.serial(0, L):
                for k in T.serial(0, G):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _vnni_impl():
    """vpdpbusd.512 with byte-vector operands."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                              dtype="uint8x64"),
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    return impl


def _avx2_impl():
    """C + vpmaddwd(broadcast A pair, B) on int16 operands."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((2,), "int16", offset_factor=1), B: T.Buffer((8, 2), "int16", offset_factor=1),
             C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"), 8),
                              dtype="int16x16"),
                B.vload([0, 0], dtype="int16x16"),
                dtype="int32x8",
            )

    return impl


def _avx2_u8_impl():
    """C + vpmaddwd(vpmaddubsw(broadcast A quad, B), ones): u8 x s8 pairs summed in int16."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((8, 4), "int8", offset_factor=1),
             C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:4], B[0:8, 0:4])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 8),
                                  dtype="uint8x32"),
                    B.vload([0, 0], dtype="int8x32"),
                    dtype="int16x16",
                ),
                T.broadcast(T.int16(1), 16),
                dtype="int32x8",
            )

    return impl


def pairs_fit_int16(packed_w, x_max: int = 255) -> bool:
    """True when every adjacent pair of reduction elements of a packed weight [..., G] keeps
    x_max * (|w_a| + |w_b|) within int16 (vpmaddubsw then never saturates)."""
    import numpy as np

    w = np.abs(packed_w.astype(np.int32))
    return int((w[..., 0::2] + w[..., 1::2]).max(initial=0)) * x_max <= 32767


def register_intrins() -> bool:
    """Register both intrinsics (idempotent); False without TVM."""
    try:
        from tvm.s_tir import TensorIntrin
    except ImportError:
        return False
    TensorIntrin.register(VNNI.intrin, _desc(VNNI), _vnni_impl(), override=True)
    TensorIntrin.register(AVX2.intrin, _desc(AVX2), _avx2_impl(), override=True)
    TensorIntrin.register(AVX2_U8.intrin, _desc(AVX2_U8), _avx2_u8_impl(), override=True)
    return True


def register_vnni_intrin() -> str | None:
    """Register the intrinsics; the VNNI one's name, or None without TVM."""
    return VNNI.intrin if register_intrins() else None


INTRIN = register_vnni_intrin()
