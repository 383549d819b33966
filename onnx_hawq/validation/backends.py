"""Backends that run a quantized model, for the bit-exactness check against onnxruntime.

A backend is ONE function ``factory(model, names) -> run`` where ``run(feeds)`` returns the
arrays named ``names`` (in that order) for a batch of feeds (the last batch may be smaller).
Register it with one line in BACKENDS ("name": "module:function"); the module is imported only
when the backend is asked for, so optional dependencies (tvm) stay optional.
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np
import onnx

from onnx_hawq.errors import HawqError, InputError
from onnx_hawq.ort import first_line

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
Factory = Callable[[onnx.ModelProto, list[str]], Run]

BACKENDS: dict[str, str] = {
    "ort": "onnx_hawq.validation.backends:ort_backend",
    "reference": "onnx_hawq.validation.backends:reference_backend",
    "tvm": "onnx_hawq.compiler.build:tvm_backend",
}


def load_backend(name: str) -> Factory:
    """The factory registered under `name`; an unknown name or a missing dependency is an InputError."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    module, _, func = BACKENDS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except ImportError as e:
        raise InputError(f"backend {name!r} is not available: {e}") from None


def ort_backend(model: onnx.ModelProto, names: list[str]) -> Run:
    """onnxruntime (CPU) with `names` exposed as outputs."""
    from onnx_hawq.ort import expose, session

    try:
        sess = session(expose(model, names))
    except Exception as e:  # onnxruntime raises its own exception types
        raise HawqError(f"onnxruntime cannot load the model: {first_line(e)}") from None

    def run(feeds):
        try:
            return sess.run(names, feeds)
        except Exception as e:
            raise HawqError(f"onnxruntime failed: {first_line(e)}") from None

    return run


def reference_backend(model: onnx.ModelProto, names: list[str]) -> Run:
    """onnx-hawq's numpy integer reference interpreter (onnx_hawq.reference)."""
    from onnx_hawq.reference import ReferenceRunner

    runner = ReferenceRunner(model)

    def run(feeds):
        try:
            return runner.run(names, feeds)
        except NotImplementedError as e:  # an op or attribute the interpreter does not support: bad input
            raise InputError(f"reference interpreter: {first_line(e)}") from None
        except (KeyError, ValueError) as e:
            raise HawqError(f"reference interpreter failed: {type(e).__name__}: {first_line(e)}") from None

    return run
