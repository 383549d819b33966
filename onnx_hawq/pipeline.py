"""`onnx-hawq auto`: sensitivity (ONNX route) -> plan -> quantize -> validate, into one folder.

The model and the data are read once and the model is prepared once; the stages pass objects
(`Sensitivity`, `Plan`, the quantized `ModelProto`, `Report`) and each writes the file its own
command would have written.

Size budget: as everywhere (`planning.limits`), ``N%`` means N% of the way from the smallest plan
the bits allow to the all-8-bit model (HAWQ-V3's α), ``N%W8A8`` that share of the W8A8 model, and
an absolute size (``40KB``) is used as given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import onnx

from onnx_hawq.calibration.hessian import HessianConfig
from onnx_hawq.config import JsonConfig, atomic_write_json
from onnx_hawq.errors import InputError
from onnx_hawq.model_io import check_model_output_path
from onnx_hawq.planning.config import Pin, PlanConfig
from onnx_hawq.planning.limits import Limit, format_amount
from onnx_hawq.validation.config import CompareOptions, Thresholds
from onnx_hawq.validation.report import Report

AUTO_HESSIAN = HessianConfig(max_iter=50, tol=0.1, min_iter=10, blocks="layer", deflate=8)
# auto: the Hessian when torch is installed and converts the graph, else the forward-only ΔL (with a notice)
SENSITIVITY_ROUTES = ("auto", "hessian", "perturbation")
log = logging.getLogger("onnx_hawq")


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
    route: str = "auto"  # sensitivity route, one of SENSITIVITY_ROUTES
    options: CompareOptions = CompareOptions(layerwise=True)
    thresholds: Thresholds = Thresholds()
    rounding: Optional[str] = None  # weight rounding of Ω and quantize (None: gptq)
    weight_range: Optional[str] = None  # full | avx2 (None: WeightQuant's default)

    def __post_init__(self):
        if self.max_size.resource != "size":
            raise InputError("auto's budget is a --max-size limit")
        if self.threads is not None and self.threads < 1:
            raise InputError("--threads must be >= 1")
        if self.route not in SENSITIVITY_ROUTES:
            raise InputError(f"--method {self.route!r}: use one of {', '.join(SENSITIVITY_ROUTES)}")


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


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What `auto` reads, read once: the model (as given and prepared), both data sets, labels."""

    model: onnx.ModelProto
    prepared: onnx.ModelProto
    calib: dict
    data: dict
    labels: Optional[np.ndarray]


def prepare_folder(cfg: AutoConfig) -> Artefacts:
    """Create the output folder; refuse a file there or an artefact path that is an input."""
    folder = Path(cfg.output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o {folder} is a file; auto writes a folder")
    art = Artefacts.in_folder(folder, cfg.model)
    for path in art.paths():
        check_model_output_path(path, [cfg.model], [cfg.calib, cfg.data])
    return art


def read_inputs(cfg: AutoConfig) -> Inputs:
    """Read the model, both data files and the --labels array, and prepare the model: once, up
    front, so bad input fails before any work."""
    from onnx_hawq.calibration.onnx_route import load_labels
    from onnx_hawq.model_io import load_data
    from onnx_hawq.model_io import load_model_any
    from onnx_hawq.transforms.prepare import prepare_model

    model = load_model_any(cfg.model)
    from onnx_hawq.quantization import check_float32

    check_float32(model)  # refused before any artefact is written
    calib = load_data(cfg.calib, model, "calibration")
    data = load_data(cfg.data, model)
    labels = None
    if cfg.labels is not None:
        labels = load_labels(cfg.data, cfg.labels, len(next(iter(data.values()))))
    return Inputs(model, prepare_model(model), calib, data, labels)


def size_budget(inst, limit: Limit) -> SizeBudget:
    """Bytes for `limit` (see `planning.limits`) with the range it was placed in."""
    from onnx_hawq.planning.planner import lowest_use

    low, high = lowest_use(inst, "size"), inst.all8["size"]
    return SizeBudget(limit.resolve(high, low), low, high)


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


def hessian_refusal(prepared: onnx.ModelProto) -> str | None:
    """Why the Hessian route cannot run on `prepared` (torch missing, ops it cannot convert); None if it can."""
    if not torch_installed():
        return "torch is not installed (the [torch] extra)"
    from onnx_hawq.calibration.onnx_to_torch import unsupported_message

    return unsupported_message(prepared.graph)


def torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def sensitivity_route(cfg: AutoConfig, inp: Inputs) -> str:
    """'hessian' or 'perturbation': the configured route, or for 'auto' the Hessian where it can run.
    A --method hessian the model cannot take is refused here, before any work."""
    if cfg.route == "perturbation":
        return cfg.route
    reason = hessian_refusal(inp.prepared)
    if reason is None:
        return "hessian"
    if cfg.route == "hessian":
        raise InputError(f"--method hessian: {reason}")
    log.warning("auto: %s; using the forward-only perturbation sensitivity (measured ΔL in onnxruntime)", reason)
    return "perturbation"


def sensitivity_config(cfg: AutoConfig, art: Artefacts, route: str, show_progress: bool):
    """The SensitivityConfig of the stage, for the Hessian or the perturbation route."""
    from onnx_hawq.arith.quantizer import WeightQuant
    from onnx_hawq.calibration.perturbation import PerturbationConfig
    from onnx_hawq.calibration.run import SensitivityConfig

    forward = None
    if route == "perturbation":
        forward = PerturbationConfig(bits=tuple(sorted(set(cfg.bits) | {8})), act_bits=cfg.act_bits, loss=cfg.loss,
                                     batch_size=cfg.sens_batch_size, batches=cfg.sens_batches,
                                     weights=WeightQuant.of(cfg.rounding, cfg.weight_range))
    return SensitivityConfig(model=cfg.model, output=str(art.sensitivity), data=cfg.calib, loss=cfg.loss,
                             batch_size=cfg.sens_batch_size, batches=cfg.sens_batches, hessian=cfg.hessian,
                             plot=str(art.sensitivity_png), progress=show_progress, perturbation=forward)


def sensitivity_stage(cfg: AutoConfig, art: Artefacts, inp: Inputs, route: str, show_progress: bool):
    """The sensitivities of the prepared model on the calibration data (Hessian or measured ΔL); files written."""
    from onnx_hawq.calibration.run import sensitivity_of, write_sensitivity

    scfg = sensitivity_config(cfg, art, route, show_progress)
    with torch_threads(cfg.threads if scfg.perturbation is None else None):
        sens = sensitivity_of(inp.prepared, scfg, inp.calib)
    write_sensitivity(sens, scfg)
    return sens


def plan_config(cfg: AutoConfig, art: Artefacts) -> PlanConfig:
    return PlanConfig(model=cfg.model, sensitivity=str(art.sensitivity), output=str(art.plan), bits=cfg.bits,
                      act_bits=cfg.act_bits, pins=cfg.pins, tie_residual=cfg.tie_residual, calib=cfg.calib,
                      rounding=cfg.rounding, weight_range=cfg.weight_range)


def check_plan_options(cfg: AutoConfig, art: Artefacts, inp: Inputs) -> SizeBudget:
    """--bits, --act-bits, --pin, the ties and the size budget, checked before the Hessian: the plan's
    size does not depend on the sensitivities, so the instance is built with every factor 0."""
    from onnx_hawq.calibration.sensitivity_file import LayerSensitivity, Sensitivity
    from onnx_hawq.layers import find_layers
    from onnx_hawq.planning.instance import instance_of
    from onnx_hawq.plans import fingerprint

    layers = find_layers(inp.prepared)
    if not layers:
        raise InputError(f"{cfg.model} has no quantizable layers (Conv/Gemm/MatMul with constant weights)")
    zero = Sensitivity(fingerprint(layers), "trace", {l.name: LayerSensitivity(0.0) for l in layers})
    budget = size_budget(instance_of(plan_config(cfg, art), inp.prepared, layers, zero), cfg.max_size)
    if budget.bytes < budget.smallest:
        raise InputError(f"limits cannot be met with these bits, pins and ties: --max-size is "
                         f"{format_amount('size', budget.bytes)}, smallest achievable "
                         f"{format_amount('size', budget.smallest)}")
    return budget


def check_labels(cfg: AutoConfig, inp: Inputs) -> None:
    """The labels must index the classes of the first output (2-D [N, C], or --classes-axis)."""
    from onnx_hawq.validation.metrics import classes_axis

    if inp.labels is None:
        return
    name = inp.model.graph.output[0].name
    shape = first_output_shape(inp)
    axis = classes_axis(shape, cfg.options.classes_axis)
    if axis is None or len(shape) != 2:
        raise InputError(f"--labels needs output {name} to hold class scores for each label ([N, C]); it has "
                         f"shape {tuple(shape)}")
    if inp.labels.max(initial=0) >= shape[axis]:
        raise InputError(f"--labels: label {inp.labels.max()} is out of range for {shape[axis]} classes "
                         f"(output {name})")


def first_output_shape(inp: Inputs) -> tuple:
    """The first output's shape: from shape inference when static, else from one float run."""
    from onnx_hawq.layers import inferred_shapes
    from onnx_hawq.model_io import fixed_batch
    from onnx_hawq.ort import first_line, session

    name = inp.model.graph.output[0].name
    shape = inferred_shapes(inp.prepared).get(name)
    if shape and all(d is not None for d in shape):
        return shape
    count = fixed_batch(inp.model) or 1
    feeds = {k: v[:count] for k, v in inp.data.items()}
    try:
        return session(inp.model).run([name], feeds)[0].shape
    except Exception as e:  # onnxruntime raises its own exception types
        raise InputError(f"onnxruntime cannot run the model: {first_line(e)}") from None


def plan_stage(cfg: AutoConfig, art: Artefacts, inp: Inputs, sens):
    """Solve the ILP under the size budget; write plan.json. Returns (PlanOutcome, SizeBudget)."""
    from onnx_hawq.layers import find_layers
    from onnx_hawq.planning.instance import instance_of
    from onnx_hawq.planning.planner import PlanOutcome, solve_limits, to_plan

    pcfg = plan_config(cfg, art)
    layers = find_layers(inp.prepared)
    sens.check_model(layers)
    inst = instance_of(pcfg, inp.prepared, layers, sens, data=inp.calib)  # Ω of the GPTQ-rounded weights
    budget = size_budget(inst, cfg.max_size)
    limits = {"size": budget.bytes}
    sol = solve_limits(inst, limits, pcfg)
    plan = to_plan(inst, sol, limits, pcfg)
    plan = dataclasses.replace(plan, meta={**plan.meta, "size_budget": budget.to_dict()})
    plan.save(art.plan)
    return PlanOutcome(plan, sol, limits), budget


def quantize_stage(cfg: AutoConfig, art: Artefacts, inp: Inputs, plan, progress: Callable | None):
    """The quantized model (checked, saved) and its report (saved)."""
    from onnx_hawq.calibration.ranges import CalibConfig
    from onnx_hawq.calibration.rounding import RoundingConfig
    from onnx_hawq.model_io import save_model_any
    from onnx_hawq.quantization import quantize_to_format

    model, report = quantize_to_format(inp.prepared, plan, inp.calib, CalibConfig(), progress=progress,
                                       prepared=True, rounding=RoundingConfig(plan.weight_quant()))
    report.update(model=cfg.model, output=str(art.model))
    save_model_any(model, art.model)
    atomic_write_json(art.quantize_report, report)
    return model, report


def validate_stage(cfg: AutoConfig, art: Artefacts, inp: Inputs, quantized, progress: Callable | None) -> Report:
    from onnx_hawq.validation.run import ValidateConfig, validate_models

    plot = str(art.layers_png) if cfg.options.layerwise else None
    vcfg = ValidateConfig(cfg.model, str(art.model), cfg.data, cfg.labels, cfg.options, cfg.thresholds,
                          str(art.validation), plot)
    return validate_models(vcfg, inp.model, quantized, inp.data, inp.labels, progress, inp.prepared)


def _timed(seconds: dict[str, float], stage: str, fn, *args):
    """fn(*args), recording its wall time under `stage`."""
    start = time.perf_counter()
    out = fn(*args)
    seconds[stage] = time.perf_counter() - start
    return out


def run_auto(cfg: AutoConfig, progress: Callable | None = None) -> AutoResult:
    """Run the four stages, timing each; write auto.json. The gate verdict is left to the caller."""
    art = prepare_folder(cfg)
    inp = read_inputs(cfg)
    check_plan_options(cfg, art, inp)
    check_labels(cfg, inp)
    route = sensitivity_route(cfg, inp)
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    sens = _timed(seconds, "sensitivity", sensitivity_stage, cfg, art, inp, route, progress is not None)
    outcome, budget = _timed(seconds, "plan", plan_stage, cfg, art, inp, sens)
    model, qreport = _timed(seconds, "quantize", quantize_stage, cfg, art, inp, outcome.plan, progress)
    report = _timed(seconds, "validate", validate_stage, cfg, art, inp, model, progress)
    result = AutoResult(art, seconds, budget, outcome.summary(), outcome.plan.histogram(), qreport, report)
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
