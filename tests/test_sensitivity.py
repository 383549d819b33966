"""Hutchinson traces and power-iteration eigenvalues against exact Hessians; the two routes agree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnx_hawq.calibration.hessian import (  # noqa: E402
    BlockHessian, HessianConfig, as_batches, hutchinson, layer_sensitivities, power_iteration, relative_stderr)
from onnx_hawq.calibration.onnx_route import onnx_sensitivities  # noqa: E402
from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity  # noqa: E402
from onnx_hawq.calibration.torch_route import channel_scale, match_modules, torch_sensitivities  # noqa: E402
from onnx_hawq.errors import HawqError, InputError  # noqa: E402
from onnx_hawq.layers import find_layers  # noqa: E402
from onnx_hawq.plans import fingerprint  # noqa: E402
from onnx_hawq.transforms.prepare import prepare_model  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
FACTORY = f"{SAMPLES / 'digits_resnet.py'}:hawq_factory"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_problem():
    """A conv-tanh-conv-tanh-linear net in float64 small enough for the exact Hessian."""
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 2, 3), nn.Tanh(),
                          nn.Flatten(), nn.Linear(18, 3)).double()
    x = torch.randn(16, 1, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, (x, y), torch.nn.functional.cross_entropy


def exact_blocks(model, data, loss, scales):
    """Layer name -> exact diagonal Hessian block w.r.t. scale * weight."""
    from torch.func import functional_call

    names = ["0", "2", "5"]
    weights = [dict(model.named_parameters())[f"{n}.weight"].detach() for n in names]
    folded = [w * scales[n] for n, w in zip(names, weights)]

    def f(*ws):
        params = {f"{n}.weight": w / scales[n] for n, w in zip(names, ws)}
        return loss(functional_call(model, params, (data[0],)), data[1])

    hess = torch.autograd.functional.hessian(f, tuple(folded))
    return {n: hess[i][i].reshape(w.numel(), w.numel()) for i, (n, w) in enumerate(zip(names, weights))}


@pytest.mark.parametrize("scaled, blocks", [(False, "shared"), (True, "shared"), (True, "layer")])
def test_traces_and_eigenvalues_match_exact_hessian(scaled, blocks):
    model, data, loss = tiny_problem()
    gen = torch.Generator().manual_seed(1)
    scales = {n: (torch.rand(2 if n != "5" else 3, 1, 1, 1, generator=gen, dtype=torch.float64) + 0.5
                  if scaled else torch.ones(1, dtype=torch.float64)) for n in ("0", "2", "5")}
    scales["5"] = scales["5"].reshape(-1, 1)
    cfg = HessianConfig(method="both", max_iter=400, tol=0.1, eigen_iter=500, eigen_tol=1e-9, blocks=blocks)
    res = layer_sensitivities(model, data, loss, config=cfg, scales=scales if scaled else None)
    exact = exact_blocks(model, data, loss, scales)
    assert list(res.layers) == ["0", "2", "5"]
    for name, block in exact.items():
        s = res.layers[name]
        true_trace = float(block.trace()) / block.shape[0]
        assert s.params == block.shape[0] and s.samples >= cfg.min_iter and s.stderr > 0
        assert abs(s.trace - true_trace) <= 3 * s.stderr, (name, s.trace, true_trace, s.stderr)
        eig = torch.linalg.eigvalsh(block)
        dominant = float(eig[eig.abs().argmax()])
        assert abs(s.eigenvalue - dominant) <= 0.01 * abs(dominant), (name, s.eigenvalue, dominant)
    eigen_hvps = sum(s.eigen_iters for s in res.layers.values())
    if blocks == "shared":
        assert res.hvp_count == res.layers["0"].samples + eigen_hvps
        assert len({s.samples for s in res.layers.values()}) == 1
    else:
        assert res.hvp_count == sum(s.samples for s in res.layers.values()) + eigen_hvps
        assert all(s.stderr < cfg.tol * abs(s.trace) for s in res.layers.values())


def quadratic_operator(eigenvalues, seed=0, size=None):
    """BlockHessian of 0.5 w^T A w for a random orthogonal basis and the given spectrum."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    w = torch.randn(len(eigenvalues), dtype=torch.float64, generator=gen, requires_grad=True)
    grads = torch.autograd.grad(0.5 * w @ a @ w, [w], create_graph=True)
    return BlockHessian(grads, [w], [None]), a


@pytest.mark.parametrize("magnitude", [1.0, 1e-9])
def test_power_iteration_negative_and_tiny_dominant_eigenvalue(magnitude):
    spectrum = [v * magnitude for v in (-5.0, 4.0, 1.0, 0.5, -0.2, 3.0)]
    op, _ = quadratic_operator(spectrum)
    cfg = HessianConfig(eigen_iter=500, eigen_tol=1e-10)
    eig, iters = power_iteration(op, 0, cfg, torch.Generator().manual_seed(0))
    assert iters > 5
    assert abs(eig - (-5.0 * magnitude)) <= 0.01 * 5.0 * magnitude


def test_hutchinson_does_not_stop_early_on_negative_trace():
    from onnx_hawq.calibration.hessian import hutchinson

    op, a = quadratic_operator([-3.0, -2.5, 2.0, -2.2, 0.4, -0.3, 1.5, -1.9], seed=3)
    cfg = HessianConfig(max_iter=3000, tol=0.05, min_iter=5)
    (samples,) = hutchinson(op, cfg)
    assert float(a.trace()) < 0
    assert len(samples) > cfg.min_iter
    assert relative_stderr(samples[:, None])[0] < cfg.tol
    stderr = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - float(a.trace())) <= 3 * stderr


def test_layer_blocks_have_no_cross_layer_noise():
    """Per-layer block HVPs sample v_i.H_ii v_i only: every layer reaches the tolerance with fewer
    HVPs in all than the shared estimator spends without getting there; each layer stops on its own."""
    model, data, loss = tiny_problem()
    run = lambda blocks: layer_sensitivities(model, data, loss, config=HessianConfig(
        max_iter=600, tol=0.05, blocks=blocks))
    shared, layer = run("shared"), run("layer")
    rel = lambda s: s.stderr / abs(s.trace)
    assert max(rel(s) for s in shared.layers.values()) > 0.05
    assert max(rel(s) for s in layer.layers.values()) < 0.05
    assert layer.hvp_count < shared.hvp_count == 600
    assert len({s.samples for s in layer.layers.values()}) > 1
    for name, s in layer.layers.items():
        assert abs(s.trace - shared.layers[name].trace) <= 3 * np.hypot(s.stderr, shared.layers[name].stderr)


def test_time_budget_stops_early():
    op, _ = quadratic_operator([1.0, -1.0, 0.5, 2.0])
    from onnx_hawq.calibration.hessian import hutchinson

    (samples,) = hutchinson(op, HessianConfig(max_iter=10**6, tol=1e-9, max_seconds=0.2))
    assert 2 < len(samples) < 10**6


def test_relative_stderr_uses_absolute_mean():
    samples = np.array([[-1.0, 0.0], [-1.2, 0.0], [-0.8, 0.0]])
    rel = relative_stderr(samples)
    assert rel[0] == pytest.approx(samples[:, 0].std(ddof=1) / np.sqrt(3) / 1.0)
    assert rel[1] == 0.0


def test_seeded_and_reproducible():
    model, data, loss = tiny_problem()
    run = lambda seed: layer_sensitivities(model, data, loss, config=HessianConfig(max_iter=12, tol=1e-9, seed=seed))
    first, again, other = run(0), run(0), run(1)
    assert first.layers == again.layers
    assert first.layers["0"].trace != other.layers["0"].trace


def test_as_batches_forms():
    x, y = torch.zeros(4, 3), torch.zeros(4)
    assert len(as_batches((x, y))) == 1
    assert len(as_batches([(x, y)] * 5, limit=2)) == 2
    assert as_batches([((x, x), y)])[0][0] == (x, x)
    with pytest.raises(HawqError):
        as_batches([])
    with pytest.raises(HawqError):
        as_batches([x, x, x])


def test_bad_config_is_input_error():
    with pytest.raises(InputError):
        HessianConfig(method="hessian")
    with pytest.raises(InputError):
        HessianConfig(tol=0)


@pytest.fixture(scope="module")
def digits():
    model = prepare_model(onnx.load(SAMPLES / "digits_resnet.onnx"))
    return model, find_layers(model)


def test_onnx_route_matches_torch_route_on_digits(digits):
    import sys

    sys.path.insert(0, str(SAMPLES))
    from digits_resnet import load_digits_split

    model, layers = digits
    x, y, _, _ = load_digits_split()
    cfg = HessianConfig(max_iter=12, tol=1e-9)
    via_torch = torch_sensitivities(FACTORY, model, layers, cfg, batches=1, progress=False)
    via_onnx = onnx_sensitivities(model, {"input": x[:64]}, y[:64], cfg, 64, 1, progress=False)
    assert list(via_onnx.layers) == list(via_torch.layers) == [l.name for l in layers]
    for name, t in via_torch.layers.items():
        o = via_onnx.layers[name]
        assert abs(t.trace - o.trace) <= max(t.stderr, o.stderr), name
        assert t.stderr > 0 and o.samples == t.samples == 12


def test_torch_route_rescales_folded_batchnorm(digits):
    """The exported convs hold BN-folded weights: the torch weights are per-channel multiples."""
    import sys

    sys.path.insert(0, str(SAMPLES))
    from digits_resnet import hawq_factory
    from onnx_hawq.layers import weights_of

    model, layers = digits
    net = hawq_factory()[0]
    weights = match_modules(net, layers)
    conv1 = next(l for l in layers if l.name == "conv1")
    s = channel_scale(weights["conv1"].detach().numpy(), weights_of(model, conv1), "conv1")
    assert s is not None and s.shape == (16, 1, 1, 1) and np.all(s > 1.5)
    fc = next(l for l in layers if l.name == "fc")
    assert channel_scale(weights["fc"].detach().numpy(), weights_of(model, fc), "fc") is None
    with pytest.raises(HawqError, match="not the ONNX model"):
        channel_scale(weights["conv1"].detach().numpy()[::-1].copy(), weights_of(model, conv1), "conv1")


def test_torch_modules_must_be_onnx_layers(digits):
    _, layers = digits
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(HawqError, match=r"not found as ONNX layers: 0 "):
        match_modules(net, layers)


def test_sensitivity_file_refused_for_another_model(digits, tmp_path):
    _, layers = digits
    stats = {l.name: LayerSensitivity(trace=1.0, params=l.params) for l in layers}
    sens = Sensitivity(model=fingerprint(layers), method="trace", layers=stats)
    sens.save(tmp_path / "s.json")
    loaded = Sensitivity.load(tmp_path / "s.json")
    loaded.check_model(layers)
    other = list(layers[:-1]) + [dataclasses.replace(layers[-1], weight_shape=(10, 16))]
    with pytest.raises(InputError, match="another model"):
        loaded.check_model(other)


def test_mse_loss_trace_matches_the_gauss_newton_trace():
    """Without labels, --loss mse on an embedding output: for y = x @ W the Hessian of
    sum((y - y_ref)^2) / B is 2/B * x^T x (x) I, so its trace is 2/B * out * sum ||x_b||^2
    (reported per parameter)."""
    from onnx import helper, numpy_helper

    r = np.random.default_rng(3)
    w, x = r.normal(size=(6, 4)).astype(np.float32), r.normal(size=(32, 6)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")], "emb",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 6])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4])],
                          [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    res = onnx_sensitivities(model, {"x": x}, None, HessianConfig(max_iter=400, tol=1e-9), 32, 1, False, loss="mse")
    (est,) = res.layers.values()
    exact = 2 / 32 * 4 * float((x.astype(np.float64) ** 2).sum()) / w.size
    assert abs(est.trace - exact) <= 4 * est.stderr and est.stderr < 0.1 * exact


@pytest.mark.parametrize("k", [2, 60])
def test_deflated_hutchinson_matches_exact_hessian(k):
    """Hutch++ (deflate=k): within 3 SE of the exact block trace; exact once k >= the block size."""
    model, data, loss = tiny_problem()
    scales = {n: torch.ones(1, dtype=torch.float64) for n in ("0", "2", "5")}
    cfg = HessianConfig(max_iter=400, tol=0.01, blocks="layer", deflate=k)
    res = layer_sensitivities(model, data, loss, config=cfg)
    for name, block in exact_blocks(model, data, loss, scales).items():
        s, true_trace = res.layers[name], float(block.trace()) / block.shape[0]
        assert abs(s.trace - true_trace) <= max(3 * s.stderr, 1e-9 * abs(true_trace)), (name, s, true_trace)
        if k >= block.shape[0]:
            assert s.stderr <= 1e-9 * abs(true_trace) and s.samples == cfg.min_iter
    # every block here needs far more than min_iter plain vectors, so each was deflated after them
    extra = sum(2 * min(k, s.params) + cfg.min_iter for s in res.layers.values())
    assert res.hvp_count == sum(s.samples for s in res.layers.values()) + extra


def test_blocks_that_converge_at_once_are_not_deflated():
    op, a = quadratic_operator([1.0] * 6)  # H = I: every Hutchinson sample is exactly tr(H)
    samples = hutchinson(op, HessianConfig(blocks="layer", deflate=4, tol=0.05))
    assert op.count == 10 and np.allclose(samples[0], 6.0)


def test_deflation_needs_layer_blocks():
    with pytest.raises(InputError, match="needs blocks='layer'"):
        HessianConfig(deflate=4)
    with pytest.raises(InputError, match="deflate must be >= 0"):
        HessianConfig(deflate=-1, blocks="layer")
