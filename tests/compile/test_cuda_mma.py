"""The CUDA int8 matmul builds (on a CPU box, with nvcc) into tensor-core `mma.sync` s8 instructions."""

import shutil

import pytest

tvm = pytest.importorskip("tvm", reason="TVM is not installed (the tvm extra)")
pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: TVM cannot build CUDA")

from onnx_hawq.compiler.cuda_mma import build_mma_matmul, cuda_source  # noqa: E402

MMA = "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_int8_matmul_uses_mma_sync_s8(arch):
    src = cuda_source(build_mma_matmul(40, 20, 70, arch))
    assert MMA in src
    assert "__global__" in src and "int* __restrict__ C" in src

