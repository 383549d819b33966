"""AVX512-VNNI support for TVM's CPU (llvm) target: host detection, the target, a fixed intrinsic.

The wheel's stock `dot_16x4_vnni` tensor intrinsic (tvm.s_tir.tensor_intrin.x86) passes int32x16
operands to `llvm.x86.avx512.vpdpbusd.512`, which LLVM 22 rejects (it wants <64 x i8>). Importing
this module registers our own `hawq_dot_16x4_vnni` (the stock description, a body with
uint8x64/int8x64 reinterprets) when TVM is importable. The stock module is not imported: importing
any of `tvm.s_tir.tensor_intrin` loads every target's intrinsics (~40-80 s), and our name leaves the
stock registration free. The body is one nested expression on purpose: a `x = expr` statement in
tirx TVMScript becomes a stack buffer and makes the kernels ~4x slower.
"""

from __future__ import annotations

import pathlib

VNNI_INTRIN = "hawq_dot_16x4_vnni"
VNNI_MCPU = "sapphirerapids"
CPUINFO = pathlib.Path("/proc/cpuinfo")


def host_has_vnni(cpuinfo: pathlib.Path = CPUINFO) -> bool:
    """True when every listed CPU of `cpuinfo` has the avx512_vnni flag; False when it cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = [line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")]
    return bool(flags) and all("avx512_vnni" in f for f in flags)


def host_has_amx(cpuinfo: pathlib.Path = CPUINFO) -> bool:
    """True when the CPUs of `cpuinfo` list amx_int8 (TVM has no AMX intrinsics; for reports only)."""
    try:
        return "amx_int8" in cpuinfo.read_text().split()
    except OSError:
        return False


def vnni_target(num_cores: int = 1, mcpu: str = VNNI_MCPU):
    """The llvm tvm.target.Target with `mcpu` (an AVX512-VNNI CPU) and `num_cores` threads."""
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": int(num_cores)})


def _desc():
    """C[i] += A[k] * B[i, k] over 16 lanes x 4 bytes (the stock description)."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def dot_product_16x4_u8i8i32_desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return dot_product_16x4_u8i8i32_desc


def _fixed_impl():
    """The vpdpbusd.512 body of the 16x4 u8*s8->s32 dot product with byte-vector operands."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def dot_16x4_u8i8i32_vnni(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
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

    return dot_16x4_u8i8i32_vnni


def register_vnni_intrin() -> str | None:
    """Register the fixed intrinsic as VNNI_INTRIN (idempotent); the name, or None without TVM."""
    try:
        from tvm.s_tir import TensorIntrin
    except ImportError:
        return None
    TensorIntrin.register(VNNI_INTRIN, _desc(), _fixed_impl(), override=True)
    return VNNI_INTRIN


INTRIN = register_vnni_intrin()
