"""The Comparator: run a float and a quantized model on the same batches and measure the difference.

One object serves the CLI, `auto` and the tests. onnxruntime runs both models; per output it
accumulates SQNR, cosine, abs errors and top-1 agreement (plus accuracy against labels). With
``layerwise`` it also exposes every integer node's output (see `layerwise`), and every extra
backend's results are compared with onnxruntime's element by element (bit exactness) on every
8/32-bit integer tensor and every DequantizeLinear output; float islands, and whatever is computed from
their values, are left out (float ops round differently in numpy, TVM and onnxruntime).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional

import numpy as np
import onnx

from onnx_hawq.errors import InputError
from onnx_hawq.report import float_rounding
from onnx_hawq.model_io import fixed_batch
from onnx_hawq.model_io import padded_batches
from onnx_hawq.model_io import unpad
from onnx_hawq.validation import layerwise as lw
from onnx_hawq.validation.backends import load_backend
from onnx_hawq.validation.config import CompareOptions
from onnx_hawq.validation.metrics import (Counter, Mismatch, MismatchStats, TensorMetrics, TensorStats,
                                        classes_axis, sample_cosines)

log = logging.getLogger("onnx_hawq")


@dataclasses.dataclass(frozen=True)
class OutputResult:
    """One graph output: float vs quantized metrics; top-1 agreement (%) for classification outputs."""

    metrics: TensorMetrics
    top1_agreement: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy (%) of each model on the labels, for the first output."""

    output: str
    float: float
    quantized: float

    @property
    def drop(self) -> float:
        return self.float - self.quantized


@dataclasses.dataclass(frozen=True)
class LayerResult:
    """One integer node: accumulated and local error vs its float tensor (see `layerwise`)."""

    label: str
    node: str
    op: str
    bits: str
    tensor: str
    metrics: TensorMetrics
    local_sqnr_db: Optional[float] = None
    index: int = 0  # position in graph order

    @property
    def rank_key(self) -> float:
        return self.local_sqnr_db if self.local_sqnr_db is not None else self.metrics.sqnr_db


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Everything one Comparator.run measured; `layers` is ranked worst first."""

    samples: int
    outputs: dict[str, OutputResult]
    accuracy: Optional[Accuracy] = None
    layers: tuple[LayerResult, ...] = ()
    backends: dict[str, dict[str, Mismatch]] = dataclasses.field(default_factory=dict)
    not_compared: int = 0  # integer tensors derived from float arithmetic (not comparable bit for bit)
    float_rounding: tuple[str, ...] = ()  # the float op types responsible
    backend_cosine: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # such outputs
    skipped_layers: tuple[lw.Skipped, ...] = ()  # integer nodes the layer-wise report could not map


def output_pairs(float_model: onnx.ModelProto, quant_model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(float output, quantized output) pairs: by name when every name matches, else by position."""
    f = [o.name for o in float_model.graph.output]
    q = [o.name for o in quant_model.graph.output]
    if set(f) <= set(q):
        return [(n, n) for n in f]
    if len(f) == len(q):
        return list(zip(f, q))
    raise InputError(f"the models' outputs differ: float has {', '.join(f)}; quantized has {', '.join(q)}")


def backend_tensors(model: onnx.ModelProto) -> list[str]:
    """Tensors run on every backend: all node outputs (`exact_tensor` picks the compared ones)."""
    return list(dict.fromkeys(o for n in model.graph.node for o in n.output if o))


def dequantized(model: onnx.ModelProto) -> set[str]:
    """Float tensors made by DequantizeLinear: exact functions of integers, so compared bit for bit."""
    return {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}


QUANT_DTYPES = (np.uint8, np.int8, np.int32)  # quantized values and accumulators; int64 is shape arithmetic


class Comparator:
    """Float vs quantized in onnxruntime (+ extra backends vs onnxruntime), batch by batch."""

    def __init__(self, float_model: onnx.ModelProto, quant_model: onnx.ModelProto,
                 options: CompareOptions = CompareOptions(), prepared_float: onnx.ModelProto | None = None):
        """`prepared_float`: `float_model` after `prepare_model`, when the caller has it already."""
        self.options = options
        self.pairs = output_pairs(float_model, quant_model)
        fixed = fixed_batch(quant_model) or fixed_batch(float_model)
        self.batch_size, self.pad = fixed or options.batch_size, fixed is not None
        self.tensors: list[lw.QuantTensor] = []
        self.skipped: list[lw.Skipped] = []
        if options.layerwise:
            if prepared_float is None:
                from onnx_hawq.transforms.prepare import prepare_model

                prepared_float = prepare_model(float_model)
            float_model = prepared_float
            self.tensors = lw.matched(lw.quant_tensors(quant_model, self.skipped), float_model, self.skipped)
            if not self.tensors:
                log.warning("layer-wise: no node of the quantized model maps back to the float graph "
                            "(hawq.output metadata, T_quantized, T_scale, T_zero_point)")
        graph_inputs = {i.name for i in float_model.graph.input}
        self.float_names = list(dict.fromkeys([f for f, _ in self.pairs] + [
            n for n in lw.float_names(self.tensors) if n not in graph_inputs]))
        tainted, self.float_rounding = float_rounding(quant_model)
        every = backend_tensors(quant_model) if options.extra_backends else []
        self.compared = [t for t in every if t not in tainted]
        self.compared_set = set(self.compared)
        self.not_compared = len(every) - len(self.compared)
        self.approx = [q for _, q in self.pairs if q in tainted] if options.extra_backends else []
        self.fetched = list(dict.fromkeys(self.compared + self.approx))
        self.quant_names = list(dict.fromkeys([q for _, q in self.pairs] + [t.qname for t in self.tensors]
                                              + self.fetched))
        ort = load_backend("ort")
        self.float_run = ort(float_model, self.float_names)
        self.quant_run = ort(quant_model, self.quant_names)
        self.locals = {t.qname: ort(m, [t.qname]) for t in self.tensors
                       if (m := lw.local_model(quant_model, t)) is not None}
        self.extra = {b: load_backend(b)(quant_model, self.fetched) for b in options.extra_backends}
        self.dequantized = dequantized(quant_model)

    def run(self, data: dict[str, np.ndarray], labels: np.ndarray | None = None,
            progress: Callable | None = None) -> Comparison:
        """Compare the models on `data` (arrays named after the inputs); `labels` give accuracy.
        A fixed-batch model's short last batch is padded, and the padded rows dropped from every metric."""
        acc = _Accumulators(self)
        chunks = padded_batches(data, self.batch_size, self.pad)
        n = len(next(iter(data.values())))
        total = -(-n // self.batch_size)
        start = 0
        for feeds, count in (progress(chunks, total=total, desc="validate") if progress else chunks):
            self._batch(acc, feeds, count, None if labels is None else labels[start:start + count])
            start += count
        return acc.result(n, labels is not None)

    def _real(self, names: list[str], values: list[np.ndarray], count: int) -> dict[str, np.ndarray]:
        """name -> value with the padded rows of the batch dropped."""
        return {k: unpad(v, count, self.batch_size) for k, v in zip(names, values)}

    def _batch(self, acc: "_Accumulators", feeds: dict, count: int, labels: np.ndarray | None) -> None:
        fv = self._real(self.float_names, self.float_run(feeds), count)
        qv = self._real(self.quant_names, self.quant_run(feeds), count)
        for f, q in self.pairs:
            acc.add_output(f, fv[f], qv[q], labels)
        real = {k: v[:count] for k, v in feeds.items()}
        values = {**real, **fv}
        for t in self.tensors:
            acc.layers[t.qname].add(fv[t.float_name], t.dequantize(qv[t.qname]), t.float_name)
            if t.qname in self.locals:
                (local,) = self.locals[t.qname](lw.local_feeds(t, values))
                acc.local[t.qname].add(fv[t.float_name], t.dequantize(local), t.float_name)
        self._backends(acc, feeds, count, qv)

    def _backends(self, acc: "_Accumulators", feeds: dict, count: int, qv: dict) -> None:
        """Extra backends vs onnxruntime: bit for bit where possible, else outputs by cosine."""
        for name, run in self.extra.items():
            for tensor, value in self._real(self.fetched, run(feeds), count).items():
                if tensor in self.compared_set and (qv[tensor].dtype in QUANT_DTYPES or tensor in self.dequantized):
                    acc.mismatch[name].setdefault(tensor, MismatchStats()).add(qv[tensor], value)
                if tensor in self.approx:
                    cos = float(sample_cosines(qv[tensor].astype(np.float64), value.astype(np.float64)).min())
                    worst = acc.backend_cos[name]
                    worst[tensor] = min(worst.get(tensor, 1.0), cos)


class _Accumulators:
    """Running statistics of one Comparator.run."""

    def __init__(self, comp: Comparator):
        self.comp = comp
        self.outputs = {f: TensorStats() for f, _ in comp.pairs}
        self.top1 = {f: Counter() for f, _ in comp.pairs}
        self.correct = (Counter(), Counter())
        self.layers = {t.qname: TensorStats() for t in comp.tensors}
        self.local = {t.qname: TensorStats() for t in comp.tensors}
        self.mismatch: dict[str, dict[str, MismatchStats]] = {b: {} for b in comp.extra}
        self.backend_cos: dict[str, dict[str, float]] = {b: {} for b in comp.extra}

    def add_output(self, name: str, ref: np.ndarray, test: np.ndarray, labels: np.ndarray | None) -> None:
        self.outputs[name].add(ref, test, f"output {name}")
        axis = classes_axis(ref.shape, self.comp.options.classes_axis)
        if axis is not None:
            self.top1[name].add(ref.argmax(axis) == test.argmax(axis))
        if labels is not None and name == self.comp.pairs[0][0]:
            self._accuracy(name, ref, test, labels, axis)

    def _accuracy(self, name: str, ref: np.ndarray, test: np.ndarray, labels: np.ndarray, axis: int | None) -> None:
        if axis is None or ref.argmax(axis).shape != labels.shape:
            where = "axis 1 of a 2-D output" if self.comp.options.classes_axis is None else \
                f"axis {self.comp.options.classes_axis}"
            raise InputError(f"--labels needs output {name} to hold class scores on {where} for each label; "
                             f"it has shape {ref.shape}, the labels {labels.shape}")
        if labels.max(initial=0) >= ref.shape[axis]:
            raise InputError(f"--labels: label {labels.max()} is out of range for {ref.shape[axis]} classes")
        self.correct[0].add(ref.argmax(axis) == labels)
        self.correct[1].add(test.argmax(axis) == labels)

    def result(self, samples: int, with_labels: bool) -> Comparison:
        outputs = {f: OutputResult(self.outputs[f].metrics(), self.top1[f].percent()) for f, _ in self.comp.pairs}
        accuracy = None
        if with_labels:
            accuracy = Accuracy(self.comp.pairs[0][0], self.correct[0].percent(), self.correct[1].percent())
        layers = [LayerResult(t.label, t.node, t.op, t.bits, t.float_name, self.layers[t.qname].metrics(),
                              self.local[t.qname].metrics().sqnr_db if t.qname in self.comp.locals else None, k)
                  for k, t in enumerate(self.comp.tensors)]
        layers.sort(key=lambda r: r.rank_key)
        backends = {b: {t: s.result() for t, s in m.items()} for b, m in self.mismatch.items()}
        skipped = (self.comp.not_compared, self.comp.float_rounding) if backends else (0, ())
        cosines = {b: c for b, c in self.backend_cos.items() if c}
        return Comparison(samples, outputs, accuracy, tuple(layers), backends, *skipped, cosines,
                          tuple(self.comp.skipped))
