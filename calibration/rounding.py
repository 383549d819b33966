"""Data-driven weight rounding: GPTQ/OBQ codes and clipping scales per layer, from the layer's
input statistics on the calibration data, plus the bias correction of the mean output shift.

Sequential in stages (GPTQ's sequential form, bounded): the layers are split by their depth in the
layer graph into ``config.stages`` groups of about equal size. Stage 1 collects its layers' input
statistics (a `GramAccumulator` per layer) in one onnxruntime pass over the float model; each later
stage runs the model whose earlier layers already carry their rounded weights (dequantized, bias
shift added; activations stay float), so a layer is rounded on the inputs the quantized layers in
front of it produce. ``stages=1`` is the one-pass form (every layer on the float model's inputs).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional

import numpy as np
import onnx

from onnx_hawq.arith.quantizer import Rounding, RoundedWeights, WeightQuant, channel_scales, quantize_weight
from onnx_hawq.calibration import gram
from onnx_hawq.errors import HawqError
from onnx_hawq.layers import Layer, find_layers, name_nodes, weights_of
from onnx_hawq.model_io import fixed_batch, padded_batches, unpad
from onnx_hawq.ort import expose, session

log = logging.getLogger("onnx_hawq")
Snap = Optional[Callable[[Layer, np.ndarray, np.ndarray, np.ndarray], np.ndarray]]


@dataclasses.dataclass(frozen=True)
class RoundingConfig:
    """How weights are quantized (`weights`: rounding and code range) and the GPTQ stage's knobs."""

    weights: WeightQuant = WeightQuant()
    damp: float = 0.01
    block: int = 128
    bias_correction: bool = True
    batch_size: int = 32
    max_samples: int = 128
    max_rows: int = 16_384  # im2col rows kept per batch and layer (seeded subsample)
    max_params: int = 8_000_000  # larger layers (VGG's 100M-weight fc) keep nearest rounding
    stages: int = 4  # sequential stages (onnxruntime passes); 1: every layer on the float model's inputs

    @property
    def method(self) -> Rounding:
        return self.weights.rounding


def round_layers(model: onnx.ModelProto, layers: list[Layer], qmax: dict[str, int], data: dict[str, np.ndarray],
                 config: RoundingConfig = RoundingConfig(), progress=None, snap: Snap = None) -> dict[str, RoundedWeights]:
    """Layer name -> RoundedWeights for every layer in `qmax` (its |code| bound), on `data`.

    `snap(layer, codes, scales, bias_shift) -> scales` moves searched scales to the ones the layer
    will ship with (the exact-dyadic snapping of the rewrite); codes are then re-optimized there."""
    if config.method == Rounding.NEAREST or not qmax:
        return {}
    wanted = [l for l in layers if l.name in qmax]
    out: dict[str, RoundedWeights] = {}
    current = model
    for k, stage in enumerate(layer_stages(model, wanted, config.stages)):
        if k:
            current = with_rounded(model, wanted, out)
        todo, stats = layer_statistics(current, stage, data, config, progress)
        out.update((l.name, _round(model, l, *stats[l.name], qmax[l.name], config, snap)) for l in todo)
    return out


def layer_depths(model: onnx.ModelProto, layers: list[Layer]) -> dict[str, int]:
    """Layer name -> how many weight layers lie on the longest path in front of it."""
    by_node = {l.node_name: l.name for l in layers}
    depth: dict[str, int] = {}
    out = {}
    for node in model.graph.node:  # topological order
        d = max((depth.get(t, 0) for t in node.input if t), default=0)
        if node.name in by_node:
            out[by_node[node.name]] = d
            d += 1
        depth.update((t, d) for t in node.output)
    return out


def layer_stages(model: onnx.ModelProto, layers: list[Layer], count: int) -> list[list[Layer]]:
    """`layers` in at most `count` groups of consecutive depths (the distinct depths split evenly);
    layers of one depth share a group, which sees the float form of its own members."""
    depths = layer_depths(model, layers)
    levels = sorted(set(depths.get(l.name, 0) for l in layers))
    group_of = {d: k * max(1, count) // len(levels) for k, d in enumerate(levels)}
    groups: dict[int, list[Layer]] = {}
    for layer in layers:  # graph order within a group
        groups.setdefault(group_of[depths.get(layer.name, 0)], []).append(layer)
    return [groups[k] for k in sorted(groups)]


def with_rounded(model: onnx.ModelProto, layers: list[Layer], rounded: dict[str, RoundedWeights]) -> onnx.ModelProto:
    """A copy of `model` whose rounded layers compute with their dequantized codes and corrected bias
    (weights shared by several layers stay float)."""
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    shared = {l.weight for l in layers if sum(m.weight == l.weight for m in layers) > 1}
    for layer in layers:
        rw = rounded.get(layer.name)
        if rw is None or layer.weight in shared or layer.weight not in inits:
            continue
        w = rw.codes.astype(np.float64) * rw.scales.reshape((-1,) + (1,) * (rw.codes.ndim - 1))
        inits[layer.weight].CopyFrom(numpy_helper.from_array(
            np.ascontiguousarray(np.moveaxis(w, 0, layer.out_axis)).astype(np.float32), layer.weight))
        if layer.bias and layer.bias in inits:
            bias = numpy_helper.to_array(inits[layer.bias]).astype(np.float64) + rw.bias_shift
            inits[layer.bias].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), layer.bias))
    return out


def layer_statistics(model: onnx.ModelProto, layers: list[Layer], data: dict[str, np.ndarray],
                     config: RoundingConfig, progress=None) -> tuple[list[Layer], dict]:
    """(the layers GPTQ rounds, layer name -> (GramSpec, GramStats)) from one onnxruntime pass over
    `data`; layers above config.max_params are left out (they keep nearest rounding)."""
    todo = [l for l in layers if l.params <= config.max_params]
    for layer in layers:
        if layer.params > config.max_params:
            log.info("rounding: %s (%d weights) keeps nearest rounding", layer.name, layer.params)
    nodes = {n.name: n for n in model.graph.node}
    specs = {l.name: gram.gram_spec(nodes[l.node_name], l.weight_shape, max_rows=config.max_rows) for l in todo}
    accs = {l.name: gram.GramAccumulator(specs[l.name]) for l in todo}
    if todo:
        _accumulate(model, todo, nodes, accs, data, config, progress)
    return todo, {l.name: (specs[l.name], accs[l.name].stats()) for l in todo}


def rounded_weights(model: onnx.ModelProto, layers: list[Layer], qmaxes: dict[str, tuple[int, ...]],
                    data: dict[str, np.ndarray], config: RoundingConfig = RoundingConfig(), progress=None):
    """Yield (layer, {qmax: dequantized weight, out channels on axis 0}) for every layer in `qmaxes`:
    the weights quantize writes at each |code| bound (GPTQ with scale search on `data`'s statistics,
    collected once for all bounds; nearest at max-abs scales where quantize keeps nearest). The
    exact-dyadic snap of the scales, which depends on the activation scales, is not applied."""
    model = _named(model)
    wanted = [l for l in find_layers(model) if l.name in qmaxes]
    todo, stats = ([], {}) if config.method == Rounding.NEAREST else layer_statistics(
        model, wanted, data, config, progress)
    for layer in wanted:
        w0 = weights_of(model, layer).astype(np.float64)
        out = {}
        for qmax in qmaxes[layer.name]:
            if layer.name in stats:
                rw = _round(model, layer, *stats[layer.name], qmax, config, None)
                codes, scales = rw.codes, rw.scales
            else:
                scales = channel_scales(w0, qmax)
                codes = quantize_weight(w0, scales, qmax)
            out[qmax] = codes.astype(np.float64) * scales.reshape((-1,) + (1,) * (w0.ndim - 1))
        yield layer, out


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every node named as quantize names them (statistics are keyed by node)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    name_nodes(out)
    return out


def _accumulate(model, layers, nodes, accs, data, config: RoundingConfig, progress) -> None:
    """Feed each layer's input activation, batch by batch, into its accumulator."""
    inputs = list(dict.fromkeys(nodes[l.node_name].input[0] for l in layers))
    sess = session(expose(model, inputs))
    n = min(config.max_samples, len(next(iter(data.values()))))
    chunks = padded_batches({k: v[:n] for k, v in data.items()}, config.batch_size, fixed_batch(model) is not None)
    total = -(-n // config.batch_size)
    for feed, count in (progress(chunks, total=total, desc="rounding statistics") if progress else chunks):
        values = dict(zip(inputs, sess.run(inputs, feed)))
        for layer in layers:
            x = unpad(values[nodes[layer.node_name].input[0]], count, config.batch_size)
            accs[layer.name].add(x.astype(np.float64))


def _round(model, layer: Layer, spec, stats, qmax: int, config: RoundingConfig, snap: Snap) -> RoundedWeights:
    """Scale search + GPTQ for one layer, then GPTQ again at the shipped (snapped) scales, keeping per
    channel whichever of GPTQ and nearest rounding has the smaller output error there."""
    w0 = weights_of(model, layer).astype(np.float64)
    shipped = False
    try:
        codes, scales = gram.layer_optimized(w0, stats, spec, qmax, config.damp, config.block)
        if snap is not None:
            scales = np.asarray(snap(layer, codes, scales, _shift(w0, codes, scales, stats, spec, config)), np.float64)
            codes, shipped = _best_at(w0, stats, spec, scales, qmax, config), True
    except (np.linalg.LinAlgError, ValueError, HawqError) as e:
        log.warning("rounding: %s kept nearest rounding (%s)", layer.name, e)
        scales = channel_scales(w0, qmax)
        codes, shipped = quantize_weight(w0, scales, qmax), False
    return RoundedWeights(codes.astype(np.int8), scales, _shift(w0, codes, scales, stats, spec, config), shipped)


def _best_at(w0, stats, spec, scales, qmax: int, config: RoundingConfig) -> np.ndarray:
    """Per channel, GPTQ or nearest codes at fixed `scales`, by output error on the statistics."""
    gptq_codes = gram.layer_codes(w0, stats, spec, scales, qmax, config.damp, config.block)
    near = quantize_weight(w0, scales, qmax)
    worse = gram.layer_output_error(w0, gptq_codes, scales, stats, spec) > gram.layer_output_error(
        w0, near, scales, stats, spec)
    return np.where(worse.reshape((-1,) + (1,) * (w0.ndim - 1)), near, gptq_codes).astype(np.int8)


def _shift(w0, codes, scales, stats, spec, config: RoundingConfig) -> np.ndarray:
    if not config.bias_correction:
        return np.zeros(len(scales))
    return gram.layer_bias_shift(w0, codes, scales, stats, spec)

