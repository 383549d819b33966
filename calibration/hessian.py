"""Per-layer Hessian statistics of a PyTorch model: Hutchinson traces and top eigenvalues.

Every layer's trace comes from the same Hessian-vector products: for each Rademacher vector v
(all layers at once) one double backward ``autograd.grad(grads, weights, grad_outputs=v)`` gives
``Hv``, and layer i's sample is ``v_i . (Hv)_i`` (an unbiased estimate of tr(H_ii)). The loss
gradient is built once, with its graph kept, so each vector costs one double backward only.

A layer may carry a per-output-channel ``scale``: the Hessian is then taken with respect to
``scale * weight`` (``S^-1 H S^-1``), which is the weight the ONNX graph holds once a following
BatchNorm is folded into the layer. torch is imported inside the functions.

The shared estimator's sample for layer i also carries the cross-layer terms sum_j!=i v_i.H_ij v_j
(zero mean, but often far more variance than the layer's own block: see
benchmarks/sensitivity_speed.py). ``blocks="layer"`` instead runs one block HVP ``H_ii v_i`` per
unconverged layer on the same retained gradient graph, and each layer stops on its own.

``deflate=k`` (with ``blocks="layer"``) is Hutch++ with an adaptive second phase: a layer whose
min_iter plain samples say it needs many more is deflated: the range of ``H_ii`` is sketched with
k Rademacher vectors (Q = orth(H_ii S), k block HVPs), the trace of ``Q^T H_ii Q`` is computed
exactly (k more), and Hutchinson samples only the rest, ``(Pg)^T H_ii (Pg)`` with P = I - QQ^T.
Each sample is ``tr(Q^T H Q) + (Pg)^T H (Pg)``: unbiased for any Q, and its variance is that of the
deflated block, which for the near-low-rank blocks of trained networks is a small fraction of the
full block's (benchmarks/sensitivity_speed.py). Costs k float32 values per deflated weight.

Data parallel (`calibration.distributed`): each rank holds every ``world``-th batch, so its loss
is its shard's share of the mean loss (batches weighted by samples / all samples) and its ``H_r v``
sums over the ranks to ``Hv``. Every rank draws the same vectors from the same seed; each quadratic
form ``v.H v`` (or vector ``Hv``, for deflation and power iteration) is all-reduced before it
enters the statistics, so all ranks hold the same samples, take the same stopping decisions
(a wall-clock budget is rank 0's) and return the single-process result up to float rounding.
One process is the ``world = 1`` case of the same loop.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping, Sequence

import numpy as np

from onnx_hawq.calibration.distributed import DEVICES, Group, current, local_group
from onnx_hawq.calibration.sensitivity_file import LayerSensitivity
from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import HawqError, InputError

log = logging.getLogger("onnx_hawq")

METHODS = ("trace", "eigen", "both")
BLOCKS = ("shared", "layer")
_EIGEN_SEED_OFFSET = 1_000_003


@dataclasses.dataclass(frozen=True)
class HessianConfig(JsonConfig):
    """What to estimate and when to stop."""

    method: str = "trace"  # trace | eigen | both
    max_iter: int = 200  # Hutchinson vectors (per layer) at most
    tol: float = 0.05  # stop once every layer's stderr / |trace| is below this
    min_iter: int = 10  # vectors before the tolerance is checked
    eigen_iter: int = 100  # power iterations per layer at most
    eigen_tol: float = 1e-3  # stop once |lambda_k - lambda_k-1| <= eigen_tol * max(|lambda_k|, |lambda_k-1|)
    seed: int = 0
    blocks: str = "shared"  # shared: one HVP per vector for all layers; layer: one block HVP per layer
    max_seconds: float | None = None  # wall-clock budget of the trace estimate (results then vary by machine)
    deflate: int = 0  # blocks="layer": sketch size k of the exactly-traced part (Hutch++); 0 = plain Hutchinson
    nproc: int = 1  # data-parallel ranks that `distributed.launch` spawns locally (torchrun sets its own)
    device: str = "cpu"  # cpu | cuda (one GPU per rank, NCCL)

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.blocks not in BLOCKS:
            raise InputError(f"blocks {self.blocks!r} is not one of {', '.join(BLOCKS)}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InputError("max_seconds must be > 0")
        if self.max_iter < 2 or self.min_iter < 2 or self.eigen_iter < 1:
            raise InputError("max_iter and min_iter must be >= 2, eigen_iter >= 1")
        if not (self.tol > 0 and self.eigen_tol > 0):
            raise InputError("tolerances must be > 0")
        if self.deflate < 0 or (self.deflate and self.blocks != "layer"):
            raise InputError("deflate must be >= 0 and needs blocks='layer' (--blocks layer)")
        if self.nproc < 1:
            raise InputError("nproc must be >= 1")
        if self.device not in DEVICES:
            raise InputError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")


@dataclasses.dataclass(frozen=True)
class HessianResult:
    """Per-layer statistics (keyed by layer name, in layer order) and what they cost."""

    layers: dict[str, LayerSensitivity]
    hvp_count: int
    seconds: float


class BlockHessian:
    """v -> Hv for the loss Hessian w.r.t. the layer weights (rescaled where a scale is given).

    `grads` are this rank's share of the gradient; every product is summed over `group`'s ranks.
    """

    def __init__(self, grads: Sequence, weights: Sequence, inv_scales: Sequence, group: Group | None = None):
        self.grads, self.weights, self.inv_scales = list(grads), list(weights), list(inv_scales)
        self.group = group or Group()
        self.count = 0  # double backwards run so far (per rank)

    def _scaled(self, tensors, indices):
        return [t if self.inv_scales[i] is None else t * self.inv_scales[i] for t, i in zip(tensors, indices)]

    def _local_matvec(self, vectors: Sequence) -> list:
        idx = range(len(self.weights))
        return self._scaled(self._grad(self.grads, self.weights, self._scaled(vectors, idx)), idx)

    def _local_block(self, i: int, vector) -> Any:
        u = self._scaled([vector], [i])
        return self._scaled(self._grad([self.grads[i]], [self.weights[i]], u), [i])[0]

    def matvec(self, vectors: Sequence) -> list:
        """All blocks at once: (Hv)_i = sum_j H_ij v_j, one double backward."""
        return self.group.sum_(self._local_matvec(vectors))

    def block_matvec(self, i: int, vector) -> Any:
        """The diagonal block only: H_ii v_i, one double backward."""
        return self.block_matvecs(i, [vector])[0]

    def block_matvecs(self, i: int, vectors: Sequence) -> list:
        """H_ii v for each of `vectors`: one double backward each, one all-reduce for all."""
        return self.group.sum_([self._local_block(i, v) for v in vectors])

    def quadratic(self, vectors: Sequence) -> list[float]:
        """v_i.(Hv)_i for every layer i from one double backward (cross-layer terms included)."""
        return self._reduced([_dot(v, h) for v, h in zip(vectors, self._local_matvec(vectors))])

    def block_quadratics(self, pairs: Sequence[tuple[int, Any]]) -> list[float]:
        """v.H_ii v for each (i, v): one block double backward each, one all-reduce for all."""
        return self._reduced([_dot(v, self._local_block(i, v)) for i, v in pairs])

    def _reduced(self, scalars: list) -> list[float]:
        if not scalars:
            return []
        import torch

        return self.group.sum_([torch.stack(scalars)])[0].tolist()

    def _grad(self, grads, weights, vectors) -> list:
        import torch

        self.count += 1
        pairs = [(g, v) for g, v in zip(grads, vectors) if g.requires_grad]
        if not pairs:
            return [torch.zeros_like(w) for w in weights]
        outs, vs = zip(*pairs)
        return list(torch.autograd.grad(outs, weights, grad_outputs=vs, retain_graph=True,
                                        allow_unused=True, materialize_grads=True))


def _dot(a, b):
    """sum(a * b) accumulated in float64, a 0-d tensor."""
    import torch

    return (a * b).sum(dtype=torch.float64)


def as_batches(data, limit: int | None = None) -> list[tuple[tuple, Any]]:
    """A loader / iterable of (inputs, target) pairs, or one (inputs, target) pair -> a list of batches."""
    import torch

    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[1]) and (
            torch.is_tensor(data[0]) or isinstance(data[0], (tuple, list))):
        data = [data]
    out = []
    for item in data:
        if limit is not None and len(out) >= limit:
            break
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise HawqError("data must yield (inputs, target) pairs")
        inputs, target = item
        out.append((tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,), target))
    if not out:
        raise HawqError("data holds no batches")
    return out


def quantizable_weights(model) -> dict[str, Any]:
    """Qualified name -> weight of every Conv1d/2d/3d and Linear module (biases are not blocks)."""
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return {name: m.weight for name, m in model.named_modules()
            if isinstance(m, kinds) and getattr(m, "weight", None) is not None}


def loss_gradients(model, batches, loss_fn, weights: Sequence, samples: int | None = None) -> list:
    """Mean loss over all samples of `batches` -> its gradient w.r.t. `weights`, graph kept.

    With `samples` (the sample count of all ranks' batches) each batch weighs n_b / samples: this
    rank's share of the mean loss over every rank's data. No batches: zero gradients.
    """
    import torch

    device = weights[0].device
    sizes = [len(x[0]) for x, _ in batches]
    if not batches:
        return [torch.zeros_like(w) for w in weights]
    total, samples = torch.zeros((), device=device), samples or sum(sizes)
    for (inputs, target), n in zip(batches, sizes):
        out = model(*(t.to(device) for t in inputs))
        total = total + loss_fn(out, target.to(device)) * (n / samples)
    if not total.requires_grad:
        raise HawqError("the loss does not depend on the layer weights")
    return list(torch.autograd.grad(total, weights, create_graph=True, allow_unused=True,
                                    materialize_grads=True))


def rademacher(like, gen):
    """A +-1 tensor shaped like `like`, drawn from `gen`."""
    import torch

    return torch.randint(0, 2, like.shape, generator=gen, dtype=like.dtype).to(like.device) * 2 - 1


def relative_stderr(samples: np.ndarray) -> np.ndarray:
    """Per column: standard error of the mean / |mean| (0 where mean and spread are both 0)."""
    err = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    mean = np.abs(samples.mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(mean > 0, err / np.where(mean > 0, mean, 1.0), np.where(err > 0, np.inf, 0.0))
    return rel


def _unconverged(samples: list[list[float]], cfg: HessianConfig) -> list[int]:
    """Indices of the layers whose relative stderr is not yet below tol (all before min_iter).

    A layer that stopped drawing (blocks="layer") keeps its samples, so it stays converged.
    """
    return [i for i, col in enumerate(samples)
            if len(col) < max(cfg.min_iter, 2) or relative_stderr(np.asarray(col)[:, None])[0] >= cfg.tol]


def _shared_round(op: BlockHessian, samples, gen) -> None:
    """One Rademacher vector over all layers, one double backward: a sample for every layer."""
    vs = [rademacher(w, gen) for w in op.weights]
    for col, q in zip(samples, op.quadratic(vs)):
        col.append(q)


@dataclasses.dataclass
class Deflation:
    """A layer block's sketched range Q (columns, float32) and the exact trace of Q^T H Q."""

    basis: Any
    trace: float

    def project(self, v):
        """(I - QQ^T) v, in v's shape."""
        flat = v.reshape(-1)
        return (flat - self.basis @ (self.basis.T @ flat)).reshape(v.shape)


def deflation(op: BlockHessian, i: int, k: int, gen) -> Deflation:
    """Q = orth(H_ii S) for k Rademacher columns S, and tr(Q^T H_ii Q): 2k block HVPs (Hutch++)."""
    import torch

    w = op.weights[i]
    k = min(k, w.numel())
    sketch = torch.stack([h.reshape(-1) for h in op.block_matvecs(i, [rademacher(w, gen) for _ in range(k)])], 1)
    basis = torch.linalg.qr(sketch.to(torch.float64))[0].to(w.dtype)
    trace = sum(op.block_quadratics([(i, q.reshape(w.shape)) for q in basis.T]))
    return Deflation(basis, trace)


def _worth_deflating(col: list[float], cfg: HessianConfig, size: int) -> bool:
    """After min_iter plain samples: do the plain samples still needed exceed the deflation's 2k
    HVPs plus a fresh min_iter? (Blocks that converge at once, such as the Gauss-Newton blocks of
    an MSE loss, stay plain.)"""
    rel = float(relative_stderr(np.asarray(col)[:, None])[0])
    still_needed = len(col) * (rel / cfg.tol) ** 2 - len(col)
    return still_needed > 2 * min(cfg.deflate, size) + cfg.min_iter


def _layer_round(op: BlockHessian, samples, gen, active: list[int], deflated: dict[int, Deflation | None],
                 cfg: HessianConfig) -> None:
    """One Rademacher vector per unconverged layer, one block double backward each. With deflate=k,
    a layer still unconverged after min_iter plain samples is deflated (2k HVPs) when that is
    cheaper than sampling on, and then restarts its samples on the deflated block. The round's
    quadratic forms are all-reduced together."""
    pairs = []
    for i in active:
        if cfg.deflate and i not in deflated and len(samples[i]) >= cfg.min_iter:
            worth = _worth_deflating(samples[i], cfg, op.weights[i].numel())
            deflated[i] = deflation(op, i, cfg.deflate, gen) if worth else None
            samples[i] = [] if deflated[i] else samples[i]
        d = deflated.get(i)
        v = rademacher(op.weights[i], gen)
        pairs.append((i, d.project(v) if d else v))
    for (i, _), q in zip(pairs, op.block_quadratics(pairs)):
        d = deflated.get(i)
        samples[i].append((d.trace if d else 0.0) + q)


def hutchinson(op: BlockHessian, cfg: HessianConfig, progress: bool = False) -> list[np.ndarray]:
    """Hutchinson samples v_i.(Hv)_i per layer until every layer's relative stderr < tol.

    blocks="shared": every vector spans all layers (one HVP, cross-layer terms add variance);
    blocks="layer": each unconverged layer gets its own vector and block HVP, and stops on its own.
    Stops at max_iter vectors (per layer) or after max_seconds (rank 0's clock decides) once every
    layer has the 2 samples a standard error needs.
    """
    import torch
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(cfg.seed)
    samples: list[list[float]] = [[] for _ in op.weights]
    deflated: dict[int, Deflation | None] = {}  # None: decided to stay plain
    active, start = list(range(len(op.weights))), time.perf_counter()
    with tqdm(total=cfg.max_iter, desc="hessian trace", disable=not progress, leave=False) as bar:
        for _ in range(cfg.max_iter):
            if cfg.blocks == "shared":
                _shared_round(op, samples, gen)
            else:
                _layer_round(op, samples, gen, active, deflated, cfg)
            bar.update(1)
            active = _unconverged(samples, cfg)
            bar.set_postfix(unconverged=len(active))
            if not active or (cfg.max_seconds and min(map(len, samples)) >= 2
                              and op.group.agree(time.perf_counter() - start > cfg.max_seconds)):
                break
    return [np.asarray(col) for col in samples]


def power_iteration(op: BlockHessian, i: int, cfg: HessianConfig, gen) -> tuple[float, int]:
    """Dominant eigenvalue of block i by power iteration (Rayleigh quotient) -> (eigenvalue, iterations).

    Convergence compares |change| with the magnitudes of both estimates, so a negative or tiny
    running value neither stops the iteration early nor keeps it from stopping.
    """
    import torch

    v = torch.randn(op.weights[i].shape, generator=gen, dtype=op.weights[i].dtype).to(op.weights[i].device)
    v = v / v.norm()
    eig = None
    for it in range(1, cfg.eigen_iter + 1):
        hv = op.block_matvec(i, v)
        new = float((v * hv).sum(dtype=torch.float64))
        norm = hv.norm()
        if eig is not None and abs(new - eig) <= cfg.eigen_tol * max(abs(new), abs(eig)):
            return new, it
        if float(norm) == 0.0:
            return 0.0, it
        v, eig = hv / norm, new
    return eig, cfg.eigen_iter


def top_eigenvalues(op: BlockHessian, cfg: HessianConfig, names: Sequence[str], progress: bool = False) -> list:
    """(eigenvalue, iterations) of every layer block, seeded from cfg.seed."""
    import torch
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(cfg.seed + _EIGEN_SEED_OFFSET)
    out = []
    for i, name in enumerate(tqdm(names, desc="hessian eigen", disable=not progress, leave=False)):
        out.append(power_iteration(op, i, cfg, gen))
        log.debug("%s: top eigenvalue %.6g after %d iterations", name, *out[-1])
    return out


def layer_stats(names, weights, samples, eigens) -> dict[str, LayerSensitivity]:
    """Hutchinson samples per layer and eigen results -> LayerSensitivity per layer (average trace)."""
    out = {}
    for j, (name, w) in enumerate(zip(names, weights)):
        n = w.numel()
        col = samples[j] if samples is not None else None
        out[name] = LayerSensitivity(
            trace=float(col.mean() / n) if col is not None else 0.0,
            stderr=float(col.std(ddof=1) / np.sqrt(len(col)) / n) if col is not None else 0.0,
            samples=len(col) if col is not None else 0, params=n,
            eigenvalue=float(eigens[j][0]) if eigens else None,
            eigen_iters=int(eigens[j][1]) if eigens else None)
    return out


def warn_unconverged(stats: Mapping[str, LayerSensitivity], cfg: HessianConfig) -> None:
    """Log a warning naming the layers whose trace missed the tolerance (max_iter or max_seconds hit)."""
    rel = {n: s.stderr / abs(s.trace) if s.trace else float("inf") for n, s in stats.items() if s.samples}
    missed = sorted((n for n, r in rel.items() if not r < cfg.tol), key=lambda n: -rel[n])
    if missed:
        hint = " or use blocks='layer' (--blocks layer)" if cfg.blocks == "shared" else ""
        log.warning("trace stderr/|trace| above tol %.3g for %d layer(s), worst %s at %.3g; raise max_iter%s",
                    cfg.tol, len(missed), missed[0], rel[missed[0]], hint)


def layer_sensitivities(model, data, loss_fn, layers: Mapping[str, Any] | None = None,
                        config: HessianConfig = HessianConfig(), scales: Mapping[str, Any] | None = None,
                        batches: int | None = None, progress: bool = False) -> HessianResult:
    """(model, data, loss) -> per-layer average Hessian trace / top eigenvalue.

    `layers` maps names to weight tensors (default: every Conv/Linear module by qualified name).
    `data` is a loader or iterable of (inputs, target), or one such pair; `batches` caps it. The
    Hessian is that of the mean loss over all samples, the model in eval mode (and the layer
    weights made to require grad). `scales` maps a
    layer name to a per-output-channel factor broadcastable to its weight (see module docstring).
    Inside `distributed.launch` the model moves to the rank's device and this rank uses its shard
    of the batches (every rank must see the same data); rank 0 alone shows progress and warnings.
    """
    import torch

    start = time.perf_counter()
    group = current() or local_group(config.nproc, config.device)
    model.eval()
    layers = dict(layers if layers is not None else quantizable_weights(model))
    if not layers:
        raise HawqError("the model has no Conv or Linear layer")
    group.to_device(model, layers)
    names, weights = list(layers), [w.requires_grad_(True) if w.is_leaf else w for w in layers.values()]
    inv = [None if (scales or {}).get(n) is None else 1.0 / torch.as_tensor(scales[n]).to(w) for n, w in layers.items()]
    every = as_batches(data, batches)
    group.check_batches(every)
    grads = loss_gradients(model, group.shard(every), loss_fn, weights, sum(len(x[0]) for x, _ in every))
    op = BlockHessian(grads, weights, inv, group)
    progress = progress and group.rank == 0
    samples = hutchinson(op, config, progress) if config.method in ("trace", "both") else None
    eigens = top_eigenvalues(op, config, names, progress) if config.method in ("eigen", "both") else None
    stats = layer_stats(names, weights, samples, eigens)
    if group.rank == 0:
        warn_unconverged(stats, config)
    return HessianResult(stats, op.count, time.perf_counter() - start)

