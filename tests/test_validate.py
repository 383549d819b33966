"""The Comparator, metrics, layer-wise mapping and gate on the digits model (library level)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from onnx_hawq.errors import InputError
from onnx_hawq.model_io import load_model
from onnx_hawq.validation import layerwise as lw
from onnx_hawq.validation.backends import BACKENDS
from onnx_hawq.validation.comparator import Comparator
from onnx_hawq.validation.config import CompareOptions, Thresholds, parse_backends, parse_threshold
from onnx_hawq.validation.metrics import MismatchStats, TensorStats, sample_cosines, sqnr_db
from onnx_hawq.validation.report import GateFailed, Report, evaluate, raise_if_failed
from tests.vhelpers import BROKEN_LAYER, FLOAT, break_layer, held_out, quantized


@pytest.fixture(scope="module")
def models():
    good = quantized("8")
    return load_model(FLOAT), good, break_layer(good)


@pytest.fixture(scope="module")
def data():
    return held_out()


def test_sqnr_and_cosine_match_their_definitions():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(8, 10))
    noise = 0.1 * rng.normal(size=ref.shape)
    stats = TensorStats()
    stats.add(ref[:5], ref[:5] + noise[:5])
    stats.add(ref[5:], ref[5:] + noise[5:])  # two batches accumulate like one
    m = stats.metrics()
    want = 10 * np.log10(np.sum(ref ** 2) / np.sum(((ref + noise) - ref) ** 2))
    assert m.sqnr_db == pytest.approx(want, rel=1e-9)
    assert m.max_abs_error == pytest.approx(np.abs(noise).max(), rel=1e-6)
    cos = [np.dot(a, a + b) / np.linalg.norm(a) / np.linalg.norm(a + b) for a, b in zip(ref, noise)]
    assert m.cosine == pytest.approx(np.mean(cos), rel=1e-9)
    assert sqnr_db(1.0, 0.0) == math.inf and sqnr_db(0.0, 1.0) == -math.inf
    assert sample_cosines(np.zeros((2, 3)), np.zeros((2, 3))).tolist() == [1.0, 1.0]
    assert sample_cosines(np.zeros((1, 3)), np.ones((1, 3))).tolist() == [0.0]


def test_mismatch_counts_elements_and_max_difference():
    stats = MismatchStats()
    stats.add(np.array([1, 2, 3], np.uint8), np.array([1, 5, 3], np.uint8))
    stats.add(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    r = stats.result()
    assert (r.elements, r.mismatches, r.max_abs_diff) == (5, 1, 3.0)


def test_good_w8a8_passes_with_small_accuracy_drop(models, data):
    float_model, good, _ = models
    comp = Comparator(float_model, good).run(*data)
    report = Report(comp, evaluate(comp, Thresholds(min_sqnr=20, min_cosine=0.99, min_top1_agreement=98)))
    assert report.passed, [c.line() for c in report.failed]
    assert [c.name for c in report.checks] == ["SQNR logits", "cosine logits", "top-1 agreement logits",
                                               "accuracy drop"]
    assert comp.accuracy.float == pytest.approx(99.8, abs=0.05)
    assert 0 <= comp.accuracy.drop <= 1.0
    raise_if_failed(report)  # no exception


def test_broken_layer_fails_gate_and_ranks_worst(models, data):
    float_model, _, broken = models
    comp = Comparator(float_model, broken, CompareOptions(layerwise=True)).run(*data)
    report = Report(comp, evaluate(comp, Thresholds()))
    assert not report.passed and {c.name for c in report.failed} == {"SQNR logits", "accuracy drop"}
    with pytest.raises(GateFailed) as err:
        raise_if_failed(report)
    assert err.value.exit_code == 1 and "SQNR logits" in str(err.value)
    worst = comp.layers[0]
    assert worst.label == BROKEN_LAYER and worst.bits == "w8a8" and worst.local_sqnr_db < 0
    assert all(r.local_sqnr_db > 20 for r in comp.layers[1:])
    # the accumulated error alone would not find it: a later layer is worse on that measure
    assert min(r.metrics.sqnr_db for r in comp.layers[1:]) < worst.metrics.sqnr_db


def test_layerwise_on_good_model_covers_every_integer_node(models, data):
    float_model, good, _ = models
    comp = Comparator(float_model, good, CompareOptions(layerwise=True)).run(*data)
    nodes = [n.name for n in good.graph.node if any(p.key == "hawq.output" for p in n.metadata_props)]
    assert sorted(r.node for r in comp.layers) == sorted(nodes)
    assert [r.label for r in sorted(comp.layers, key=lambda r: r.index)][0] == "conv1"
    assert all(r.local_sqnr_db is not None and r.local_sqnr_db > 25 for r in comp.layers)


def test_local_model_includes_the_clip_of_4bit_activations(models, data):
    float_model = models[0]
    model = quantized("w8a4")
    tensors = lw.quant_tensors(model)
    conv = next(t for t in tensors if t.label == "layer1.0.conv1")
    sub = lw.local_model(model, conv)
    assert [n.op_type for n in sub.graph.node] == ["QLinearConv", "Clip"]
    assert conv.inputs[0].qmax == 15  # its input is a 4-bit activation too
    comp = Comparator(float_model, model, CompareOptions(layerwise=True)).run(*data)
    assert all(r.local_sqnr_db is not None for r in comp.layers)


def test_reference_backend_equals_ort_bit_for_bit(models, data):
    float_model, good, _ = models
    comp = Comparator(float_model, good, CompareOptions(backends=("ort", "reference"))).run(*data)
    tensors = comp.backends["reference"]
    assert "logits" in tensors and "input_quantized" in tensors  # dequantized output and integer tensors
    assert sum(m.mismatches for m in tensors.values()) == 0 and sum(m.elements for m in tensors.values()) > 10**6
    assert evaluate(comp, Thresholds(None, None, None, None))[0].passed


def off_by_one_backend(model, names):
    """A backend that gets one element of every uint8 tensor wrong (for the failing check)."""
    from onnx_hawq.validation.backends import reference_backend

    run = reference_backend(model, names)

    def wrong(feeds):
        out = run(feeds)
        for v in out:
            if v.dtype == np.uint8:
                v.reshape(-1)[0] ^= 1
        return out

    return wrong


def test_a_backend_that_differs_fails_the_gate(models, data, monkeypatch):
    float_model, good, _ = models
    monkeypatch.setitem(BACKENDS, "off-by-one", "tests.test_validate:off_by_one_backend")
    x = {"input": data[0]["input"][:64]}
    comp = Comparator(float_model, good, CompareOptions(backends=parse_backends("ort,off-by-one"))).run(x)
    wrong = comp.backends["off-by-one"]["input_quantized"]
    assert (wrong.mismatches, wrong.max_abs_diff) == (1, 1.0)  # one element in the single batch
    (check,) = evaluate(comp, Thresholds(None, None, None, None))
    assert not check.passed and check.line().startswith("FAILED")


def test_json_report_is_strict_json(models, data):
    float_model, good, _ = models
    x = {"input": data[0]["input"][:32]}
    comp = Comparator(float_model, good, CompareOptions(layerwise=True)).run(x)
    text = json.dumps(Report(comp, evaluate(comp, Thresholds())).to_dict())

    def refuse(name):
        raise ValueError(name)

    doc = json.loads(text, parse_constant=refuse)
    assert doc["kind"] == "onnx-hawq-validation" and doc["samples"] == 32 and doc["accuracy"] is None
    assert [c["name"] for c in doc["checks"]] == ["SQNR logits"]  # no labels: no accuracy check


def test_threshold_and_backend_parsing():
    assert parse_threshold("none", "--x") is None and parse_threshold("99%", "--x") == 99.0
    with pytest.raises(InputError, match="--min-sqnr 'abc'"):
        parse_threshold("abc", "--min-sqnr")
    with pytest.raises(InputError, match="unknown backend"):
        parse_backends("ort,cuda")
    with pytest.raises(InputError):
        Thresholds(min_top1_agreement=120)
    assert Thresholds.from_dict(Thresholds(min_cosine=0.9).to_dict()) == Thresholds(min_cosine=0.9)


def test_top1_threshold_needs_a_classification_output():
    from onnx_hawq.validation.comparator import Comparison, OutputResult
    from onnx_hawq.validation.metrics import TensorMetrics

    comp = Comparison(4, {"y": OutputResult(TensorMetrics(30.0, 1.0, 0.1, 0.01, 4))})
    assert [c.name for c in evaluate(comp, Thresholds(min_sqnr=20))] == ["SQNR y"]
    with pytest.raises(InputError, match="--min-top1-agreement needs an output"):
        evaluate(comp, Thresholds(min_top1_agreement=99))
