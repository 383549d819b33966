"""The `--torch module:factory` route: a user's PyTorch model mapped onto the ONNX layer names.

The factory returns ``(model, data, loss)``. Each ONNX layer must be a Conv/Linear module of the
same qualified name whose weight equals the ONNX weight up to a per-output-channel factor (a
BatchNorm the exporter or `prepare_model` folded into it). The Hessian is then taken w.r.t. the
weight as the ONNX graph holds it, so both routes measure the same quantity.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from onnx_hawq.calibration.hessian import HessianConfig, HessianResult, layer_sensitivities, quantizable_weights
from onnx_hawq.errors import HawqError, InputError, close_matches
from onnx_hawq.layers import Layer, weights_of

log = logging.getLogger("onnx_hawq")
SCALE_RTOL = 1e-4


def _import_module(where: str):
    """A dotted module name or a path to a .py file -> the module (InputError when missing)."""
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise InputError(f"factory file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"_hawq_factory_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise InputError(f"factory module {where!r} not found") from None
        raise


def load_factory(spec: str) -> Callable:
    """'pkg.mod:fn' or 'path/to/file.py:fn' -> the function (InputError for a bad spec or name)."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise InputError(f"--torch {spec!r} must be MODULE:FUNCTION (MODULE dotted or a .py path)")
    module = _import_module(where)
    fn = getattr(module, name, None)
    if not callable(fn):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise InputError(f"{where} has no function {name!r}{close_matches(name, names)}")
    return fn


def call_factory(fn: Callable, spec: str):
    """Run the user's factory -> (model, data, loss), checked; its own errors become HawqError."""
    import torch

    try:
        made = fn()
    except HawqError:
        raise
    except Exception as e:
        log.debug("factory %s failed", spec, exc_info=True)
        raise HawqError(f"factory {spec} failed: {type(e).__name__}: {e}") from None
    if not (isinstance(made, tuple) and len(made) == 3):
        raise HawqError(f"factory {spec} must return (model, data, loss)")
    model, data, loss = made
    if not isinstance(model, torch.nn.Module) or not callable(loss):
        raise HawqError(f"factory {spec} must return (torch.nn.Module, data, loss callable)")
    return model, data, loss


def match_modules(model, layers: list[Layer]) -> dict:
    """ONNX layers -> the torch weights of the same-named modules; any mismatch is a HawqError."""
    weights = quantizable_weights(model)
    names = [l.name for l in layers]
    extra = [n for n in weights if n not in names]
    if extra:
        raise HawqError(f"torch module(s) not found as ONNX layers: {', '.join(extra)} "
                        f"(ONNX layers: {', '.join(names)})")
    missing = [n for n in names if n not in weights]
    if missing:
        raise HawqError(f"ONNX layer(s) without a Conv/Linear torch module of that name: {', '.join(missing)}")
    return {n: weights[n] for n in names}


def channel_scale(torch_w: np.ndarray, onnx_w: np.ndarray, name: str) -> np.ndarray | None:
    """Per-output-channel s with onnx_w = s * torch_w (None when s is 1); HawqError if no such s."""
    if torch_w.shape != onnx_w.shape:
        raise HawqError(f"layer {name}: torch weight shape {torch_w.shape} != ONNX {onnx_w.shape}")
    t = torch_w.reshape(len(torch_w), -1).astype(np.float64)
    o = onnx_w.reshape(len(onnx_w), -1).astype(np.float64)
    norm = (t * t).sum(axis=1)
    s = np.where(norm > 0, (t * o).sum(axis=1) / np.where(norm > 0, norm, 1.0), 1.0)
    if np.abs(o - s[:, None] * t).max() > SCALE_RTOL * max(np.abs(o).max(), 1e-12):
        raise HawqError(f"layer {name}: torch weights are not the ONNX model's (not even per channel "
                        "rescaled); does the factory load the exported checkpoint?")
    if np.allclose(s, 1.0, rtol=0, atol=1e-6):
        return None
    return s.reshape((-1,) + (1,) * (torch_w.ndim - 1))


def torch_sensitivities(spec: str, onnx_model: onnx.ModelProto, layers: list[Layer], config: HessianConfig,
                        batches: int | None, progress: bool) -> HessianResult:
    """Run the factory and compute per-layer Hessian statistics keyed by the ONNX layer names."""
    model, data, loss = call_factory(load_factory(spec), spec)
    model.eval()
    weights = match_modules(model, layers)
    scales = {l.name: channel_scale(weights[l.name].detach().cpu().numpy(), weights_of(onnx_model, l), l.name)
              for l in layers}
    log.info("torch route: %d layer(s) rescaled by a folded BatchNorm", sum(s is not None for s in scales.values()))
    return layer_sensitivities(model, data, loss, weights, config, scales, batches, progress)
