"""`onnx-hawq auto`: sensitivity (ONNX route) -> plan -> quantize -> validate, into one folder.

Each stage is the library call its own command makes (`run_sensitivity`, the planner's
`build_instance`/`solve_limits`/`to_plan`, `run_quantize`, `run_validate`), so every artefact is
the file that command would have written.

Size budget: ``N%`` means N% of the way from the smallest plan the bits allow (every layer at its
lowest bits, pins and ties respected; e.g. all 4-bit) to the all-8-bit model, as in HAWQ-V3's
``total_4bit + α·(total_8bit − total_4bit)``. Scales and biases are stored whatever the bits, so on
small models a percentage of the W8A8 size can lie below the smallest plan. An absolute size
(``40KB``) is used as given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Optional

from onnx_hawq.calibration.hessian import HessianConfig
from onnx_hawq.config import JsonConfig, atomic_write_json
from onnx_hawq.errors import InputError
from onnx_hawq.model_io import check_output_path
from onnx_hawq.planning.config import Pin, PlanConfig
from onnx_hawq.planning.limits import Limit, format_amount
from onnx_hawq.validate.config import CompareOptions, Thresholds
from onnx_hawq.validate.report import Report

AUTO_HESSIAN = HessianConfig(max_iter=50, tol=0.1, min_iter=10, blocks="layer", deflate=8)


@dataclasses.dataclass(frozen=True)
class AutoConfig(JsonConfig):
    """Everything `onnx-hawq auto` needs."""

    model: str
    calib: str  # .npz for sensitivity and activation calibration
    data: str  # .npz for validation
    output: str  # folder for every artefact
    max_size: Limit
    labels: Optional[str] = None  # key of class labels in `data`
    loss: str = "kl"  # label-free Hessian loss: kl (classifiers) | mse (embeddings, regression)
    bits: tuple[int, ...] = (4, 8)
    act_bits: tuple[int, ...] = (8,)
    pins: tuple[Pin, ...] = ()
    tie_residual: bool = False
    hessian: HessianConfig = AUTO_HESSIAN
    sens_batches: int = 4
    sens_batch_size: int = 64
    threads: Optional[int] = None  # torch intra-op threads for the Hessian (None: torch's default)
    options: CompareOptions = CompareOptions(layerwise=True)
    thresholds: Thresholds = Thresholds()

    def __post_init__(self):
        if self.max_size.resource != "size":
            raise InputError("auto's budget is a --max-size limit")
        if self.threads is not None and self.threads < 1:
            raise InputError("--threads must be >= 1")


@dataclasses.dataclass(frozen=True)
class Artefacts:
    """The files `auto` writes into its folder."""

    sensitivity: Path
    sensitivity_png: Path
    plan: Path
    model: Path
    quantize_report: Path
    validation: Path
    layers_png: Path
    summary: Path

    @classmethod
    def in_folder(cls, folder: Path, model: str) -> "Artefacts":
        stem = Path(model).stem
        return cls(folder / "sensitivity.json", folder / "sensitivity.png", folder / "plan.json",
                   folder / f"{stem}.quant.onnx", folder / "quantize.json", folder / "validation.json",
                   folder / "layers.png", folder / "auto.json")

    def paths(self) -> list[Path]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclasses.dataclass(frozen=True)
class SizeBudget(JsonConfig):
    """The size limit in bytes and the range it was placed in."""

    bytes: int
    smallest: int  # every layer at its lowest allowed bits
    all8: int  # every layer at W8A8


@dataclasses.dataclass(frozen=True)
class AutoResult:
    """Stage timings, the budget, the plan summary, the quantize and validation reports."""

    artefacts: Artefacts
    seconds: dict[str, float]
    budget: SizeBudget
    plan_summary: str
    plan_counts: dict[str, int]
    quantize: dict
    validation: Report


def prepare_folder(cfg: AutoConfig) -> Artefacts:
    """Create the output folder; refuse a file there or an artefact path that is an input."""
    folder = Path(cfg.output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o {folder} is a file; auto writes a folder")
    art = Artefacts.in_folder(folder, cfg.model)
    for path in art.paths():
        check_output_path(path, cfg.model, cfg.calib, cfg.data)
    _check_inputs(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    return art


def _check_inputs(cfg: AutoConfig) -> None:
    """Read the model, both data files and the --labels array once up front, so bad input fails
    before any work (the validation stage, which reads the labels, comes after the Hessian)."""
    from onnx_hawq.calibration.onnx_route import load_labels
    from onnx_hawq.model_io import load_data, load_model

    model = load_model(cfg.model)
    load_data(cfg.calib, model)
    data = load_data(cfg.data, model)
    if cfg.labels is not None:
        load_labels(cfg.data, cfg.labels, len(next(iter(data.values()))))


def size_budget(inst, limit: Limit) -> SizeBudget:
    """Bytes for `limit`: N% of the way from the smallest plan to W8A8, or the absolute size."""
    from onnx_hawq.planning import ilp

    res = next(r for r in inst.problem.resources if r.name == "size")
    low, high = ilp.min_use(inst.problem, res), inst.all8["size"]
    raw = low + limit.value / 100 * (max(high, low) - low) if limit.percent else limit.value
    return SizeBudget(int(math.floor(raw + 1e-9)), low, high)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with torch's intra-op thread count set to `threads` (restored afterwards)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sensitivity_stage(cfg: AutoConfig, art: Artefacts, show_progress: bool) -> None:
    from onnx_hawq.calibration.run import SensitivityConfig, run_sensitivity

    with torch_threads(cfg.threads):
        run_sensitivity(SensitivityConfig(
            model=cfg.model, output=str(art.sensitivity), data=cfg.calib, loss=cfg.loss,
            batch_size=cfg.sens_batch_size, batches=cfg.sens_batches, hessian=cfg.hessian,
            plot=str(art.sensitivity_png),
            progress=show_progress))


def plan_stage(cfg: AutoConfig, art: Artefacts):
    """Solve the ILP under the size budget; write plan.json. Returns (PlanOutcome, SizeBudget)."""
    from onnx_hawq.planning.instance import build_instance
    from onnx_hawq.planning.planner import PlanOutcome, solve_limits, to_plan

    pcfg = PlanConfig(model=cfg.model, sensitivity=str(art.sensitivity), output=str(art.plan), bits=cfg.bits,
                      act_bits=cfg.act_bits, pins=cfg.pins, tie_residual=cfg.tie_residual)
    inst = build_instance(pcfg)
    budget = size_budget(inst, cfg.max_size)
    limits = {"size": budget.bytes}
    sol = solve_limits(inst, limits, pcfg)
    plan = to_plan(inst, sol, limits, pcfg)
    plan = dataclasses.replace(plan, meta={**plan.meta, "size_budget": budget.to_dict()})
    plan.save(art.plan)
    return PlanOutcome(plan, sol, limits), budget


def quantize_stage(cfg: AutoConfig, art: Artefacts, show_progress: bool) -> dict:
    from onnx_hawq.cli.quantize import QuantizeConfig, run_quantize

    return run_quantize(QuantizeConfig(model=cfg.model, output=str(art.model), calib=cfg.calib, plan=str(art.plan),
                                       report=str(art.quantize_report)), show_progress=show_progress)


def validate_stage(cfg: AutoConfig, art: Artefacts, progress: Callable | None) -> Report:
    from onnx_hawq.validate.run import ValidateConfig, run_validate

    plot = str(art.layers_png) if cfg.options.layerwise else None
    return run_validate(ValidateConfig(cfg.model, str(art.model), cfg.data, cfg.labels, cfg.options,
                                       cfg.thresholds, str(art.validation), plot), progress)


def _timed(seconds: dict[str, float], stage: str, fn, *args):
    """fn(*args), recording its wall time under `stage`."""
    start = time.perf_counter()
    out = fn(*args)
    seconds[stage] = time.perf_counter() - start
    return out


def run_auto(cfg: AutoConfig, progress: Callable | None = None) -> AutoResult:
    """Run the four stages, timing each; write auto.json. The gate verdict is left to the caller."""
    art = prepare_folder(cfg)
    seconds: dict[str, float] = {}
    _timed(seconds, "sensitivity", sensitivity_stage, cfg, art, progress is not None)
    outcome, budget = _timed(seconds, "plan", plan_stage, cfg, art)
    quantized = _timed(seconds, "quantize", quantize_stage, cfg, art, progress is not None)
    report = _timed(seconds, "validate", validate_stage, cfg, art, progress)
    counts: dict[str, int] = {}
    for bits in outcome.plan.layers.values():
        counts[bits.label()] = counts.get(bits.label(), 0) + 1
    result = AutoResult(art, seconds, budget, outcome.summary(), counts, quantized, report)
    atomic_write_json(art.summary, summary_dict(cfg, result))
    return result


def summary_dict(cfg: AutoConfig, result: AutoResult) -> dict:
    """auto.json: the config, stage times, budget, plan histogram and the gate's outcome."""
    acc = result.validation.comparison.accuracy
    return {"kind": "onnx-hawq-auto", "version": 1, "config": cfg.to_dict(),
            "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "size_budget": result.budget.to_dict(), "plan": result.plan_counts,
            "size_bytes": result.quantize["totals"]["size_bytes"],
            "accuracy": None if acc is None else {"float": acc.float, "quantized": acc.quantized, "drop": acc.drop},
            "checks": [c.line() for c in result.validation.checks], "passed": result.validation.passed,
            "artefacts": {f.name: str(getattr(result.artefacts, f.name)) for f in dataclasses.fields(Artefacts)
                          if f.name != "layers_png" or cfg.options.layerwise}}


def summary_table(result: AutoResult) -> str:
    """The short table printed at the end of `auto`."""
    art, b, val = result.artefacts, result.budget, result.validation
    size = result.quantize["totals"]["size_bytes"]
    rows = [("sensitivity", art.sensitivity.name + ", " + art.sensitivity_png.name),
            ("plan", f"{art.plan.name}  ({', '.join(f'{k} x{v}' for k, v in sorted(result.plan_counts.items()))})"),
            ("quantize", f"{art.model.name}, {art.quantize_report.name}"),
            ("validate", art.validation.name + (f", {art.layers_png.name}" if val.comparison.layers else ""))]
    lines = [f"{'stage':<12} {'seconds':>8}  artefacts in {art.summary.parent}"]
    lines += [f"{name:<12} {result.seconds[name]:>8.2f}  {files}" for name, files in rows]
    lines.append(f"{'total':<12} {sum(result.seconds.values()):>8.2f}")
    lines.append(f"size {format_amount('size', size)} (budget {format_amount('size', b.bytes)}; all-lowest-bits "
                 f"{format_amount('size', b.smallest)}, W8A8 {format_amount('size', b.all8)})")
    lines += [f"output {n}: SQNR {o.metrics.sqnr_db:.2f} dB" for n, o in val.comparison.outputs.items()]
    if val.comparison.accuracy is not None:
        a = val.comparison.accuracy
        lines.append(f"accuracy: float {a.float:.2f}%  quantized {a.quantized:.2f}%  (drop {a.drop:+.2f} pt)")
    lines.append(("gate PASSED" if val.passed else "gate FAILED") + f" ({len(val.checks)} checks)")
    return "\n".join(lines)
