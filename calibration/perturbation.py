"""Forward-only sensitivity: the measured change of the loss when one layer's weights are quantized.

For layer i and weight quantizer Q_b (the weights quantize writes for `config.weights`: nearest at
max-abs scales, or GPTQ with scale search on the same data's layer statistics, collected once)
``ΔL_i(b) = L(W_i <- Q_b(W_i)) - L(W)``, every other layer kept float. L is the distance of the first output to the model's own float output, averaged over the calibration samples:
``KL(softmax(float) || softmax(perturbed))`` over the last axis (``loss="kl"``, classifier logits,
as the Hessian route's ``--loss kl``) or the squared error summed per sample (``loss="mse"``).
L(W) = 0, so ΔL is that loss. The planner can take ΔL as Ω_i(b) itself (`omega_from_delta`)
instead of trace_i · ||Q_b(W_i) - W_i||²: no second-order model, and no torch, so any model
onnxruntime runs works (LSTM, Resize, ConvTranspose, contrib ops).

Quantizers are measured once per distinct |w_q| bound (`WeightQuant.qmax`): with the AVX2 range
w8a4 (127 levels) differs from w8a8 (capped at 64), w4a4 equals w4a8. The file records the
`WeightQuant`; the planner refuses to mix it with another. Sessions: the float outputs come from one plain
session; each layer gets one session in which its weight initializer is also a graph input
(overridable), fed with every Q_b(W_i) in turn. Measured on 2 cores, 1 ORT thread, 4 batches of 64:
a ResNet-20-shaped CIFAR net with bits 2,3,4,8 took 2.5 s this way, 3.9 s with a session rebuilt
per (layer, bits) and 12.0 s with one session taking all layer weights as inputs (ORT then prepacks
none); a ResNet-18-shaped ImageNet net (bits 4,8, 2 batches of 8) 47.8 s / 45.4 s / 56.8 s.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time

import numpy as np
import onnx
from onnx import helper

from onnx_hawq.arith.quantizer import ACT_BITS, WEIGHT_BITS, WeightQuant, fake_quantize
from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
from onnx_hawq.config import JsonConfig
from onnx_hawq.errors import InputError
from onnx_hawq.layers import Layer, weights_of
from onnx_hawq.model_io import batches, input_specs
from onnx_hawq.ort import session
from onnx_hawq.plans import LayerBits, fingerprint

log = logging.getLogger("onnx_hawq")
LOSSES = ("kl", "mse")
METHOD = "perturbation"


@dataclasses.dataclass(frozen=True)
class PerturbationConfig(JsonConfig):
    """Which weight quantizers to measure, with which loss, on how much data."""

    bits: tuple[int, ...] = (2, 3, 4, 8)  # weight bits to measure
    act_bits: tuple[int, ...] = (8,)  # input activation bits (they set the 8-bit weights' |w_q| cap)
    loss: str = "kl"  # kl: softmax of the first output (classifiers); mse: squared error (embeddings)
    batch_size: int = 64
    batches: int | None = 4  # batches used (None: all)
    threads: int = 0  # onnxruntime intra-op threads (0: its default)
    weights: WeightQuant = WeightQuant()  # the weight quantizer whose ΔL is measured

    def __post_init__(self):
        if not self.bits or any(b not in WEIGHT_BITS for b in self.bits):
            raise InputError(f"bits {list(self.bits)}: weight bits must be in 2..8")
        if not self.act_bits or any(a not in ACT_BITS for a in self.act_bits):
            raise InputError(f"act_bits {list(self.act_bits)}: activation bits must be 4 or 8")
        if self.loss not in LOSSES:
            raise InputError(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.batch_size < 1 or (self.batches is not None and self.batches < 1) or self.threads < 0:
            raise InputError("batch_size and batches must be >= 1, threads >= 0")


@dataclasses.dataclass(frozen=True)
class PerturbationResult:
    """ΔL per layer (LayerSensitivity.delta_loss, keyed by quantizer label) and what it cost."""

    layers: dict[str, LayerSensitivity]
    runs: int  # onnxruntime batch runs
    seconds: float


def quantizers(bits, act_bits, weights: WeightQuant) -> dict[str, LayerBits]:
    """One choice per distinct weight quantizer (|w_q| bound), keyed by its label ('w4a8');
    8-bit activations name a quantizer that 4-bit ones share."""
    out, caps = {}, set()
    for a in sorted(set(act_bits), reverse=True):
        for w in sorted(set(bits)):
            if weights.qmax(w, a) not in caps:
                caps.add(weights.qmax(w, a))
                out[LayerBits(w, a).label()] = LayerBits(w, a)
    return out


def quantized_weight(model: onnx.ModelProto, layer: Layer, q: np.ndarray) -> np.ndarray:
    """A dequantized weight `q` (out channels on axis 0) in `layer`'s initializer layout and dtype."""
    init = next(i for i in model.graph.initializer if i.name == layer.weight)
    return np.ascontiguousarray(np.moveaxis(q, 0, layer.out_axis).astype(helper.tensor_dtype_to_np_dtype(init.data_type)))


def quantized_weights(model: onnx.ModelProto, layers: list[Layer], data: dict, config: PerturbationConfig):
    """Yield (layer, {label: Q_b(W) in the initializer's layout}) for every quantizer of `config`."""
    from onnx_hawq.calibration.rounding import Rounding, RoundingConfig, rounded_weights

    choices = quantizers(config.bits, config.act_bits, config.weights)
    qmax = {key: config.weights.qmax(c.w_bits, c.a_bits) for key, c in choices.items()}
    if config.weights.rounding == Rounding.NEAREST:
        deq = ((l, {q: fake_quantize(weights_of(model, l), q) for q in qmax.values()}) for l in layers)
    else:
        deq = rounded_weights(model, layers, {l.name: tuple(qmax.values()) for l in layers}, data,
                              RoundingConfig(config.weights))
    for layer, by_bound in deq:
        yield layer, {key: quantized_weight(model, layer, by_bound[q]) for key, q in qmax.items()}


def with_weight_input(model: onnx.ModelProto, weight: str) -> onnx.ModelProto:
    """A copy of `model` whose initializer `weight` is also a graph input, so a run may override it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if weight not in {i.name for i in out.graph.input}:
        init = next(i for i in out.graph.initializer if i.name == weight)
        out.graph.input.append(helper.make_tensor_value_info(weight, init.data_type, list(init.dims)))
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, float64."""
    x = x.astype(np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reference(output: np.ndarray, loss: str) -> np.ndarray:
    """A float output -> what `batch_loss` compares with: log-probabilities (kl) or the output (mse)."""
    return log_softmax(output) if loss == "kl" else output.astype(np.float64)


def batch_loss(ref: np.ndarray, output: np.ndarray, loss: str) -> float:
    """Summed over the batch: KL(p_ref || softmax(output)) over the last axis (`ref` = log p_ref),
    or the squared error to `ref`."""
    if loss == "kl":
        return float((np.exp(ref) * (ref - log_softmax(output))).sum())
    diff = output.astype(np.float64) - ref
    return float((diff * diff).sum())


def calibration_feeds(model: onnx.ModelProto, data: dict[str, np.ndarray], cfg: PerturbationConfig) -> list[dict]:
    """The model inputs of `data` in batches of cfg.batch_size, at most cfg.batches of them."""
    names = list(input_specs(model))
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(f"data lacks array(s) for model input(s) {', '.join(missing)}")
    feeds = list(itertools.islice(batches({n: data[n] for n in names}, cfg.batch_size), cfg.batches))
    if not feeds or not len(feeds[0][names[0]]):
        raise InputError("data holds no samples")
    return feeds


def float_references(model: onnx.ModelProto, feeds: list[dict], cfg: PerturbationConfig) -> list[np.ndarray]:
    """The first output of the float model on every batch, as `reference` makes it."""
    sess, name = session(model, cfg.threads), model.graph.output[0].name
    outs = [sess.run([name], f)[0] for f in feeds]
    if cfg.loss == "kl" and outs[0].ndim < 2:
        raise InputError(f"loss kl needs an output with classes on its last axis; the first output has shape "
                         f"{outs[0].shape}: use loss mse")
    return [reference(o, cfg.loss) for o in outs]


def mean_loss(sess, name: str, feeds, refs, weight: dict[str, np.ndarray], loss: str) -> float:
    """The loss of the session's first output to the references, with `weight` fed, per sample."""
    total = sum(batch_loss(r, sess.run([name], {**f, **weight})[0], loss) for f, r in zip(feeds, refs))
    return total / sum(len(r) for r in refs)


def delta_losses(model: onnx.ModelProto, layers: list[Layer], data: dict[str, np.ndarray],
                 config: PerturbationConfig = PerturbationConfig(), progress: bool = False) -> PerturbationResult:
    """(prepared model, its layers, input arrays) -> ΔL of every layer for every quantizer of `config`."""
    from tqdm import tqdm

    start = time.perf_counter()
    shared = sorted({l.weight for l in layers if sum(m.weight == l.weight for m in layers) > 1})
    if shared:
        log.warning("layers share weight(s) %s: their ΔL quantizes every layer using it", ", ".join(shared))
    feeds = calibration_feeds(model, data, config)
    refs = float_references(model, feeds, config)
    name, samples = model.graph.output[0].name, sum(map(len, refs))
    stats = {}
    for layer, qs in tqdm(quantized_weights(model, layers, data, config), total=len(layers), desc="perturbation",
                          disable=not progress, leave=False):
        sess = session(with_weight_input(model, layer.weight), config.threads)
        delta = {key: mean_loss(sess, name, feeds, refs, {layer.weight: q}, config.loss) for key, q in qs.items()}
        stats[layer.name] = LayerSensitivity(trace=0.0, samples=samples, params=layer.params, delta_loss=delta)
        log.debug("%s: ΔL %s", layer.name, ", ".join(f"{k} {v:.4g}" for k, v in delta.items()))
    runs = len(feeds) * (1 + len(layers) * len(quantizers(config.bits, config.act_bits, config.weights)))
    return PerturbationResult(stats, runs, time.perf_counter() - start)


def perturbation_sensitivity(model: onnx.ModelProto, layers: list[Layer], data: dict[str, np.ndarray],
                             config: PerturbationConfig = PerturbationConfig(), progress: bool = False) -> Sensitivity:
    """`delta_losses` as a sensitivity file's contents (method perturbation)."""
    res = delta_losses(model, layers, data, config, progress)
    log.info("sensitivity: %d onnxruntime batch runs in %.1f s", res.runs, res.seconds)
    return Sensitivity(model=fingerprint(layers), method=METHOD, layers=res.layers, source="onnx", loss=config.loss,
                       weights=config.weights)


def measured_weights(sens: Sensitivity) -> WeightQuant:
    """The weight quantizer a perturbation file measured (files from before the record: nearest/avx2)."""
    from onnx_hawq.plans import LEGACY_WEIGHTS

    return sens.weights or LEGACY_WEIGHTS


def _quantizer_cap(label: str, layer: str, weights: WeightQuant) -> int:
    """'w4a8' -> the |w_q| bound of that quantizer (InputError for a malformed key)."""
    try:
        w, a = label[1:].split("a")
        choice = LayerBits(int(w), int(a))
    except (ValueError, InputError):
        raise InputError(f"sensitivity file: layer {layer} has a malformed delta_loss key {label!r}") from None
    return weights.qmax(choice.w_bits, choice.a_bits)


def omega_from_delta(sens: Sensitivity, layers: list[Layer], choices,
                     weights: WeightQuant) -> tuple[tuple[float, ...], ...]:
    """Ω[layer][choice] = the measured ΔL of the choice's weight quantizer (same |w_q| bound), >= 0.

    For a sensitivity of method perturbation measured with `weights`; a choice whose quantizer was not
    measured, or another weight quantizer, is an InputError.
    """
    if sens.method != METHOD:
        raise InputError(f"sensitivity file of method {sens.method!r} holds no measured ΔL")
    if measured_weights(sens) != weights:
        raise InputError(f"the sensitivity file measured ΔL for {measured_weights(sens).label()}, the plan is for "
                         f"{weights.label()}: plan with those options or re-measure")
    out = []
    for layer in layers:
        entry = sens.layers[layer.name].delta_loss or {}
        measured = {_quantizer_cap(k, layer.name, weights): v for k, v in entry.items()}
        row = []
        for ch in choices:
            value = measured.get(weights.qmax(ch.w_bits, ch.a_bits))
            if value is None:
                raise InputError(f"sensitivity file has no measured ΔL for layer {layer.name} at {ch.label()}; "
                                 f"re-run `onnx-hawq sensitivity --method perturbation` with those bits")
            if not math.isfinite(value):
                raise InputError(f"sensitivity file holds a non-finite ΔL for layer {layer.name} at {ch.label()}")
            row.append(max(float(value), 0.0))
        out.append(tuple(row))
    return tuple(out)
