"""Data-parallel Hessian estimates (2 gloo ranks) equal the single-process ones on the same data and seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnx_hawq.calibration import distributed  # noqa: E402
from onnx_hawq.calibration.hessian import HessianConfig, layer_sensitivities  # noqa: E402
from onnx_hawq.errors import HawqError, InputError  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
CONFIGS = (HessianConfig(method="both", max_iter=15, tol=1e-9, eigen_iter=20, eigen_tol=1e-12),
           HessianConfig(max_iter=40, tol=0.05, min_iter=4, blocks="layer", deflate=3))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_net():
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 4)).double()


def tiny_data(sizes, offset: float = 0.0):
    """Batches of the given sizes (uneven sizes test the n_b / N weighting)."""
    gen = torch.Generator().manual_seed(5)
    return [((torch.randn(n, 1, 5, 5, generator=gen, dtype=torch.float64) + offset,),
             torch.randint(0, 4, (n,), generator=gen)) for n in sizes]


def estimate_tiny(sizes):
    """Every config of CONFIGS on the tiny net -> [(traces, stderrs, samples, eigenvalues, hvps)]."""
    out = []
    for cfg in CONFIGS:
        res = layer_sensitivities(tiny_net(), tiny_data(sizes), torch.nn.functional.cross_entropy, config=cfg)
        out.append(([s.trace for s in res.layers.values()], [s.stderr for s in res.layers.values()],
                    [s.samples for s in res.layers.values()], [s.eigenvalue for s in res.layers.values()],
                    res.hvp_count))
    return out


def estimate_mismatched():
    """Rank 0's decisions hold on every rank (a time budget stops all ranks together); then each
    rank sees different data, which must be refused."""
    group = distributed.current()
    assert group.agree(group.rank == 0) and not group.agree(group.rank != 0)
    budget = HessianConfig(max_iter=10**6, tol=1e-12, max_seconds=0.5)
    res = layer_sensitivities(tiny_net(), tiny_data([4, 4]), torch.nn.functional.cross_entropy, config=budget)
    assert 2 <= res.hvp_count < 10**6 and res.layers["0"].stderr > 0
    return layer_sensitivities(tiny_net(), tiny_data([4, 4], offset=group.rank), torch.nn.functional.cross_entropy,
                               config=CONFIGS[0])


def assert_same(single, parallel, rtol):
    for (t1, e1, n1, g1, h1), (t2, e2, n2, g2, h2) in zip(single, parallel):
        assert n1 == n2 and h1 == h2
        np.testing.assert_allclose(t2, t1, rtol=rtol, atol=0)
        np.testing.assert_allclose(e2, e1, rtol=rtol * 100, atol=0)
        if g1[0] is not None:
            np.testing.assert_allclose(g2, g1, rtol=rtol, atol=0)


@pytest.mark.parametrize("sizes", [(7, 5, 6), (9,)], ids=["uneven-3-batches", "one-batch-idle-rank"])
def test_two_gloo_ranks_equal_one_process(sizes):
    single = distributed.launch(estimate_tiny, (sizes,))
    parallel = distributed.launch(estimate_tiny, (sizes,), nproc=2)
    assert single == estimate_tiny(sizes)  # launch(nproc=1) is the plain call
    assert_same(single, parallel, rtol=1e-9)
    assert single[1][2] != [single[1][2][0]] * 3  # the layer-block config stopped layers separately


def test_time_budget_and_different_data_across_ranks():
    with pytest.raises(HawqError, match="differs between ranks"):
        distributed.launch(estimate_mismatched, nproc=2)


def test_config_fields_round_trip_and_validate():
    cfg = HessianConfig(nproc=4, device="cuda")
    assert HessianConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(InputError, match="nproc"):
        HessianConfig(nproc=0)
    with pytest.raises(InputError, match="device"):
        HessianConfig(device="tpu")
    with pytest.raises(HawqError, match="distributed.launch"):
        layer_sensitivities(tiny_net(), tiny_data([3]), torch.nn.functional.cross_entropy,
                            config=HessianConfig(nproc=2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_cuda_without_gpu_is_one_line_input_error():
    with pytest.raises(InputError, match="no CUDA GPU") as err:
        distributed.launch(estimate_tiny, ((3,),), device="cuda")
    assert "\n" not in str(err.value)


def test_torchrun_environment_single_rank(monkeypatch):
    """With torchrun's variables set, launch joins that env:// group (here of one rank)."""
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(distributed.free_port())}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InputError, match="nproc-per-node"):
        distributed.launch(estimate_tiny, ((3,),), nproc=2)
    got = distributed.launch(estimate_tiny, ((5, 4),))
    assert not torch.distributed.is_initialized()
    for k in env:
        monkeypatch.delenv(k)
    assert got == estimate_tiny((5, 4))


TORCHRUN_SCRIPT = """
import json, sys
import numpy as np, onnx
from onnx_hawq.calibration.distributed import launch
from onnx_hawq.calibration.hessian import HessianConfig
from onnx_hawq.calibration.onnx_route import onnx_sensitivities
from onnx_hawq.transforms.prepare import prepare_model

model = prepare_model(onnx.load(sys.argv[1]))
calib = np.load(sys.argv[2])
data = {"input": calib["input"][:48]}
cfg = HessianConfig(max_iter=6, tol=1e-9, blocks=sys.argv[4])
res = launch(onnx_sensitivities, (model, data, None, cfg, 16, None, False))
if res is not None:
    out = {n: [s.trace, s.samples] for n, s in res.layers.items()}
    open(sys.argv[3], "w").write(json.dumps({"layers": out, "hvps": res.hvp_count}))
"""


def run_digits(tmp_path, blocks, nproc):
    """The ONNX route on the digits sample under `torchrun --nproc-per-node nproc` -> its result JSON."""
    script, out = tmp_path / "run.py", tmp_path / "out.json"
    script.write_text(TORCHRUN_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(distributed.free_port()), str(script),
           str(SAMPLES / "digits_resnet.onnx"), str(SAMPLES / "digits_calib.npz"), str(out), blocks]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_digits_under_torchrun_equals_one_process(tmp_path):
    """Real torchrun, 2 gloo ranks, float32 digits CNN: traces equal one process to float rounding."""
    from onnx_hawq.calibration.onnx_route import onnx_sensitivities
    from onnx_hawq.transforms.prepare import prepare_model

    two = run_digits(tmp_path, "shared", 2)
    model = prepare_model(onnx.load(SAMPLES / "digits_resnet.onnx"))
    data = {"input": np.load(SAMPLES / "digits_calib.npz")["input"][:48]}
    one = onnx_sensitivities(model, data, None, HessianConfig(max_iter=6, tol=1e-9), 16, None, False)
    assert two["hvps"] == one.hvp_count == 6
    assert list(two["layers"]) == list(one.layers)
    for name, s in one.layers.items():
        assert two["layers"][name][1] == s.samples
        assert two["layers"][name][0] == pytest.approx(s.trace, rel=1e-6), name
