"""A TIR pass giving TVM's unscheduled elementwise kernels a CPU schedule (imports tvm).

TVM's CPU pipeline leaves every fused PrimFunc as scalar serial loops. For a PrimFunc whose blocks
are all spatial (the requantization chains, casts, pads, adds), this inlines the producers, fuses
the output loops and runs them in parallel chunks with a vectorized inner loop. Any other PrimFunc
(reductions, pools, our tensorized kernels) is left as it is.
"""

from __future__ import annotations

import tvm
from tvm.s_tir.schedule import ScheduleError

CHUNK = 64   # elements per parallel task's inner (vectorized) loop


def _spatial(sch, block) -> bool:
    return all(int(iv.iter_type) == 0 for iv in sch.get(block).iter_vars)


def schedule_elementwise(func):
    """The scheduled PrimFunc, or None when `func` is not purely spatial."""
    sch = tvm.s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if not blocks or not all(_spatial(sch, b) for b in blocks):
        return None
    for b in blocks[:-1]:
        try:
            sch.compute_inline(b)
        except ScheduleError:
            return None
    loops = sch.get_loops(blocks[-1])
    if not loops:
        return None
    fused = sch.fuse(*loops)
    if not isinstance(sch.get(fused).extent, tvm.tirx.IntImm):
        return None  # a symbolic batch: left to TVM
    extent = int(sch.get(fused).extent)
    if extent % CHUNK:
        return None if extent < CHUNK else _parallel_only(sch, fused)
    outer, inner = sch.split(fused, [None, CHUNK])
    sch.parallel(outer)
    sch.vectorize(inner)
    return sch.mod["main"]


def _parallel_only(sch, fused):
    outer, _ = sch.split(fused, [None, CHUNK])
    sch.parallel(outer)
    return sch.mod["main"]


def schedule_loops():
    """The module pass applying schedule_elementwise to every PrimFunc not marked scheduled."""

    @tvm.transform.module_pass(opt_level=0, name="HawqCpuLoops")
    def apply(mod, _ctx):
        updates = {}
        for gv, func in mod.functions.items():
            if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled"):
                continue
            try:
                done = schedule_elementwise(func)
            except ScheduleError:
                done = None
            if done is not None:
                updates[gv] = done.with_attr("tirx.is_scheduled", True)
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return apply
