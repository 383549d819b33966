"""The `model.onnx --data data.npz [--labels KEY]` route: Hessians of any (prepared) ONNX model.

The graph is converted to torch (`onnx_to_torch`). The loss is the cross-entropy of the first
output (logits, classes on axis 1) against integer labels, or without labels a distance from the
model's own float outputs to its current outputs: the KL divergence of their softmax over the last
axis (classifiers) or the squared error (embeddings, regression: ``loss="mse"``). At the model's own
weights such a loss has zero gradient and its Hessian is the Gauss-Newton/Fisher matrix.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx

from onnx_hawq.calibration.hessian import HessianConfig, HessianResult, layer_sensitivities
from onnx_hawq.errors import InputError
from onnx_hawq.model_io import input_specs


def load_labels(path: str | Path, key: str, count: int) -> np.ndarray:
    """The integer class labels stored under `key` in the .npz at `path` (one per sample)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise InputError(f"data file {path} has no array {key!r} for --labels; it has {', '.join(npz.files)}")
            labels = npz[key]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputError(f"data file {path} is not a readable .npz ({type(e).__name__})") from None
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"--labels {key!r}: expected {count} integer class labels, got {labels.dtype} "
                         f"array of shape {labels.shape}")
    if labels.min() < 0:
        raise InputError(f"--labels {key!r}: class labels must be >= 0")
    return labels.astype(np.int64)


def split_batches(data: dict[str, np.ndarray], names: list[str], batch_size: int, limit: int | None) -> list[tuple]:
    """Input arrays -> up to `limit` tuples of tensors (model input order) of `batch_size` samples."""
    import torch

    n = len(data[names[0]])
    starts = list(range(0, n, batch_size))[:limit]
    return [tuple(torch.from_numpy(np.ascontiguousarray(data[k][s:s + batch_size])) for k in names) for s in starts]


def first_output(out):
    return out[0] if isinstance(out, tuple) else out


def cross_entropy(out, labels):
    """Cross-entropy of the first output (logits, classes on axis 1) against class indices."""
    import torch.nn.functional as F

    return F.cross_entropy(first_output(out), labels)


def kl_to_reference(out, reference):
    """KL(reference || softmax(out)) over the last axis, averaged over the batch."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(first_output(out), dim=-1), reference, reduction="batchmean")


def mse_to_reference(out, reference):
    """Squared error of the first output to the reference, summed per sample, averaged over the batch."""
    diff = first_output(out) - reference
    return (diff * diff).sum() / max(diff.shape[0], 1)


def reference_targets(module, inputs: list[tuple], probabilities: bool = True) -> list:
    """The model's own float outputs (no gradient), as softmax probabilities over the last axis
    when `probabilities`."""
    import torch

    with torch.no_grad():
        outs = [first_output(module(*x)) for x in inputs]
    return [torch.softmax(o, dim=-1) for o in outs] if probabilities else outs


def label_targets(module, inputs: list[tuple], labels: np.ndarray) -> list:
    """Per-batch label tensors, after checking the labels fit the first output's class axis."""
    import torch

    with torch.no_grad():
        out = first_output(module(*inputs[0]))
    if out.dim() < 2:
        raise InputError(f"--labels needs an output with classes on axis 1; the model's has shape {tuple(out.shape)}")
    if labels.max() >= out.shape[1]:
        raise InputError(f"--labels: label {labels.max()} is out of range for {out.shape[1]} classes")
    sizes = np.cumsum([0] + [len(x[0]) for x in inputs])
    return [torch.from_numpy(labels[a:b]) for a, b in zip(sizes[:-1], sizes[1:])]


def onnx_sensitivities(model: onnx.ModelProto, data: dict[str, np.ndarray], labels: np.ndarray | None,
                       config: HessianConfig, batch_size: int, batches: int | None,
                       progress: bool, loss: str = "kl") -> HessianResult:
    """Per-layer Hessian statistics of a prepared ONNX model on `data` (see module docstring)."""
    from onnx_hawq.calibration.onnx_to_torch import to_torch

    module = to_torch(model)
    inputs = split_batches(data, list(input_specs(model)), batch_size, batches)
    if labels is not None:
        targets, loss_fn = label_targets(module, inputs, labels), cross_entropy
    elif loss == "mse":
        targets, loss_fn = reference_targets(module, inputs, probabilities=False), mse_to_reference
    else:
        targets, loss_fn = reference_targets(module, inputs), kl_to_reference
    return layer_sensitivities(module, list(zip(inputs, targets)), loss_fn, module.layer_parameters(),
                               config, progress=progress)
