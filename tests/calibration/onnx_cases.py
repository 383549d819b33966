"""ONNX's own node conformance cases: from the wheel's data/node folder when shipped, else generated
in memory by onnx.backend.test.case (the same export code that writes those folders)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

DATA = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "node"


def _read_pb(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _from_dir(folder: Path):
    data = folder / "test_data_set_0"
    ins = [_read_pb(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    outs = [_read_pb(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    return onnx.load(folder / "model.onnx"), ins, outs


@functools.lru_cache(maxsize=1)
def all_cases() -> dict[str, tuple]:
    """Test name -> (model, inputs, expected outputs); tensor inputs only."""
    if DATA.is_dir():
        return {p.name: p for p in sorted(DATA.iterdir()) if (p / "model.onnx").exists()}
    from onnx.backend.test.case.node import collect_testcases

    arr = lambda v: numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v
    return {c.name: (c.model, [arr(v) for v in c.data_sets[0][0]], [arr(v) for v in c.data_sets[0][1]])
            for c in collect_testcases() if c.data_sets}


def load(name: str):
    """(model, inputs, outputs) of one case."""
    case = all_cases()[name]
    return _from_dir(case) if isinstance(case, Path) else case


def names(prefixes: tuple[str, ...]) -> list[str]:
    """Case names starting with one of `prefixes` (expanded-function variants excluded)."""
    return sorted(n for n in all_cases() if n.startswith(prefixes) and "_expanded" not in n)
