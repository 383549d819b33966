"""The fixed dot_16x4_vnni intrinsic: a tiny tensorized TIR schedule builds and runs exactly."""

import numpy as np
import pytest

from onnx_hawq.compiler import vnni

tvm = pytest.importorskip("tvm", reason="TVM is not installed (the tvm extra)")
needs_vnni = pytest.mark.skipif(not vnni.host_has_vnni(), reason="this CPU lacks AVX512-VNNI")


def test_detection_reads_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor: 0\nflags\t: fpu avx512f avx512_vnni\n\nprocessor: 1\nflags\t: fpu avx512f\n")
    assert not vnni.host_has_vnni(f)
    f.write_text("processor: 0\nflags\t: fpu avx512_vnni amx_int8\n")
    assert vnni.host_has_vnni(f) and vnni.host_has_amx(f) and vnni.host_isa(f) is vnni.AMX
    f.write_text("processor: 0\nflags\t: fpu avx2 amx_int8\n")
    assert vnni.host_isa(f) is vnni.AVX2
    assert not vnni.host_has_vnni(tmp_path / "missing")


def test_register_is_idempotent_and_target_has_mcpu():
    assert vnni.register_vnni_intrin() == vnni.register_vnni_intrin() == "hawq_dot_16x4_vnni"
    target = vnni.vnni_target(2)
    host = tvm.target.codegen.llvm_get_system_cpu() if vnni.host_isa() is vnni.VNNI else "icelake-server"
    assert str(target.attrs["mcpu"]) == host and int(target.attrs["num-cores"]) == 2
    assert str(vnni.vnni_target(1, "sapphirerapids").attrs["mcpu"]) == "sapphirerapids"


@needs_vnni
def test_tiny_tensorized_schedule_runs():
    from tvm import te

    a = te.placeholder((3, 8), "uint8", name="A")
    b = te.placeholder((2, 16, 4), "int8", name="B")  # B[j, k] at [k // 4, j, k % 4]
    r = te.reduce_axis((0, 8), "k")
    c = te.compute((3, 16), lambda i, j: te.sum(a[i, r].astype("int32") * b[r // 4, j, r % 4].astype("int32"), axis=r), name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b, c]))
    blk = sch.get_sblock("C")
    i, j, k = sch.get_loops(blk)
    ko, ki = sch.split(k, [None, 4])
    sch.reorder(i, ko, j, ki)
    sch.decompose_reduction(blk, ko)
    sch.tensorize(j, vnni.INTRIN)
    assert "vpdpbusd" in sch.mod.script()
    fn = tvm.compile(sch.mod, target=vnni.vnni_target(1))["main"]
    rng = np.random.default_rng(1)
    x, w = rng.integers(0, 256, (3, 8), dtype=np.uint8), rng.integers(-128, 128, (16, 8), dtype=np.int8)
    out = tvm.runtime.tensor(np.zeros((3, 16), np.int32))
    fn(tvm.runtime.tensor(x), tvm.runtime.tensor(np.ascontiguousarray(w.reshape(16, 2, 4).transpose(1, 0, 2))), out)
    np.testing.assert_array_equal(out.numpy(), x.astype(np.int64) @ w.astype(np.int64).T)
