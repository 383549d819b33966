"""An int8 tensor-core matmul for CUDA in TIR with explicit PTX `mma.sync` (imports tvm).

TVM's dlight tensor-core rules do not build int8 matmuls in this wheel (with apache-tvm-ffi
0.1.14 tensorize runs, then lowering stops at a missing warp fragment), so this kernel issues
`mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32` itself: one warp per 16 x 8 output tile, each
thread loading its fragment registers straight from global memory in the PTX fragment layout.
C[M, N] = A[M, K] x B[N, K]^T (int8 -> int32); M, N, K are padded to 16, 8, 32 with zeros.
"""

from __future__ import annotations

TILE_M, TILE_N, TILE_K = 16, 8, 32


def _ceil(x: int, m: int) -> int:
    return -(-x // m) * m


def mma_matmul_func(m: int, n: int, k: int):
    """The PrimFunc (A int8 [M, K], B int8 [N, K]) -> C int32 [M, N] on tensor cores."""
    from tvm.script import tirx as T

    mp, np_, kp = _ceil(m, TILE_M), _ceil(n, TILE_N), _ceil(k, TILE_K)

    @T.prim_func
    def mma_matmul(A: T.Buffer((m, k), "int8"), B: T.Buffer((n, k), "int8"), C: T.Buffer((m, n), "int32")):
        T.func_attr({"global_symbol": "main", "tirx.noalias": True})
        bx = T.launch_thread("blockIdx.x", mp // TILE_M)
        by = T.launch_thread("blockIdx.y", np_ // TILE_N)
        tx = T.launch_thread("threadIdx.x", 32)
        a = T.alloc_buffer((16,), "int8", scope="local")
        b = T.alloc_buffer((8,), "int8", scope="local")
        c = T.alloc_buffer((4,), "int32", scope="local")
        for i in range(4):
            c[i] = 0
        for ko in range(kp // TILE_K):
            for i in range(16):  # a_i: row groupID (+8 for i in 4..7, 12..15), col 4*tig + i%4 (+16 for i >= 8)
                r, q = bx * 16 + tx // 4 + 8 * ((i // 4) % 2), ko * 32 + (tx % 4) * 4 + i % 4 + 16 * (i // 8)
                a[i] = T.if_then_else(r < m and q < k, A[T.min(r, m - 1), T.min(q, k - 1)], T.int8(0))
            for i in range(8):  # b_i: k = 4*tig + i%4 (+16 for i >= 4), n = groupID
                r, q = by * 8 + tx // 4, ko * 32 + (tx % 4) * 4 + i % 4 + 16 * (i // 4)
                b[i] = T.if_then_else(r < n and q < k, B[T.min(r, n - 1), T.min(q, k - 1)], T.int8(0))
            T.evaluate(T.ptx_legacy.mma("m16n8k32", "row", "col", "int8", "int8", "int32", a.data, 0, b.data, 0,
                                        c.data, 0, False, dtype="int32"))
        for i in range(4):  # c_i: row groupID (+8 for i >= 2), col 2*tig + i%2
            r, q = bx * 16 + tx // 4 + 8 * (i // 2), by * 8 + (tx % 4) * 2 + i % 2
            if r < m and q < n:
                C[r, q] = c[i]

    return mma_matmul


def build_mma_matmul(m: int, n: int, k: int, arch: str = "sm_90"):
    """tvm.compile of the kernel for `cuda` on `arch` (needs nvcc, not a GPU)."""
    import tvm

    target = tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    return tvm.compile(tvm.IRModule({"main": mma_matmul_func(m, n, k)}), target=target)


def cuda_source(lib) -> str:
    """The CUDA C source of a built kernel (its device module)."""
    return lib.mod.imports[0].inspect_source("")
