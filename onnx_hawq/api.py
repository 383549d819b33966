"""The Python face of onnx-hawq: one function per command, same options, same files.

    import onnx_hawq
    onnx_hawq.sensitivity("model.onnx", data="calib.npz", output="sens.json")
    onnx_hawq.plan("model.onnx", sensitivity="sens.json", output="plan.json", max_size="50%")
    onnx_hawq.quantize("model.onnx", calib="calib.npz", output="q.onnx", bits_from="plan.json")
    report = onnx_hawq.validate("model.onnx", "q.onnx", data="val.npz", min_sqnr="20")
    onnx_hawq.auto("model.onnx", calib="calib.npz", data="val.npz", output="out/")

Each returns the command's result object (Sensitivity, PlanOutcome, the quantize report dict,
validate's Report, ...) and raises `HawqError`/`InputError` where the command would exit 1/2.
For objects already in memory use the stage functions (`quantization.quantize_model`,
`calibration.run.sensitivity_of`, `planning.instance.instance_of`, `validation.run.validate_models`).
"""

from __future__ import annotations

from onnx_hawq.validation.config import CompareOptions, Thresholds, parse_backends, parse_threshold


def _thresholds(min_sqnr=None, min_cosine=None, min_top1_agreement=None, max_accuracy_drop=None) -> Thresholds:
    return Thresholds(parse_threshold(min_sqnr, "--min-sqnr"), parse_threshold(min_cosine, "--min-cosine"),
                      parse_threshold(min_top1_agreement, "--min-top1-agreement"),
                      parse_threshold(max_accuracy_drop, "--max-accuracy-drop"))


def sensitivity(model: str, output: str, data: str | None = None, torch: str | None = None, **options):
    """`onnx-hawq sensitivity`: options are SensitivityConfig fields (labels, loss, hessian, plot...)."""
    from onnx_hawq.calibration.run import SensitivityConfig, run_sensitivity

    return run_sensitivity(SensitivityConfig(model=model, output=output, data=data, torch_factory=torch,
                                             progress=False, **options))


def plan(model: str, sensitivity: str, output: str, max_size: str | None = None, max_bops: str | None = None,
         max_latency: str | None = None, bits: str = "4,8", act_bits: str = "8", pin: tuple[str, ...] = (),
         **options):
    """`onnx-hawq plan`: limits as on the command line ('50%', '40KB', '1.2G', '1.5ms'); options are
    PlanConfig fields (calib, rounding 'gptq'|'nearest', weight_range 'full'|'avx2', ...)."""
    from onnx_hawq.planning.config import PlanConfig, parse_bits, parse_pin
    from onnx_hawq.planning.limits import parse_limit
    from onnx_hawq.planning.planner import make_plan

    limits = {f"max_{r}": parse_limit(r, v) for r, v in (("size", max_size), ("bops", max_bops),
                                                          ("latency", max_latency)) if v}
    cfg = PlanConfig(model=model, sensitivity=sensitivity, output=output, bits=parse_bits(bits, "--bits"),
                     act_bits=parse_bits(act_bits, "--act-bits"), pins=tuple(parse_pin(p) for p in pin),
                     **limits, **options)
    return make_plan(cfg)


def quantize(model: str, calib: str, output: str, bits_from: str | None = None, bits: str | None = None,
             **options) -> dict:
    """`onnx-hawq quantize`: returns the report (also written next to the model); options are
    QuantizeConfig fields (rounding, weight_range 'full'|'avx2', format, ...)."""
    from onnx_hawq.quantization import QuantizeConfig, run_quantize

    return run_quantize(QuantizeConfig(model=model, output=output, calib=calib, plan=bits_from, bits=bits, **options))


def validate(float_model: str, quant_model: str, data: str, labels: str | None = None, report: str | None = None,
             batch_size: int = 64, layerwise: bool = False, backends: str | None = None, **thresholds):
    """`onnx-hawq validate`: returns the Report; `report.passed` is the gate."""
    from onnx_hawq.validation.run import ValidateConfig, run_validate

    options = CompareOptions(batch_size, layerwise, parse_backends(backends))
    return run_validate(ValidateConfig(float_model, quant_model, data, labels, options, _thresholds(**thresholds),
                                       report))


def compile(model: str, output: str, target: str = "llvm", check: str | None = None, **options):  # noqa: A001
    """`onnx-hawq compile` (needs the `tvm` extra): returns the check result when `check` is given."""
    from onnx_hawq.compiler.run import CompileConfig, run_compile

    return run_compile(CompileConfig(model=model, output=output, target=target, check=check, **options))


def auto(model: str, calib: str, data: str, output: str, max_size: str = "50%", labels: str | None = None,
         bits: str = "4,8", act_bits: str = "8", rounding: str | None = None, weight_range: str | None = None,
         **thresholds):
    """`onnx-hawq auto`: returns the AutoResult; `result.validation.passed` is the gate."""
    from onnx_hawq.pipeline import AutoConfig, run_auto
    from onnx_hawq.planning.config import parse_bits
    from onnx_hawq.planning.limits import parse_limit

    cfg = AutoConfig(model=model, calib=calib, data=data, output=output, max_size=parse_limit("size", max_size),
                     labels=labels, bits=parse_bits(bits, "--bits"), act_bits=parse_bits(act_bits, "--act-bits"),
                     thresholds=_thresholds(**thresholds), rounding=rounding, weight_range=weight_range)
    return run_auto(cfg)


def inspect(model: str) -> dict:
    """`onnx-hawq inspect`: the per-layer report of a model onnx-hawq produced."""
    from onnx_hawq.model_io import load_model
    from onnx_hawq.report import build_report

    return build_report(load_model(model))


def profile(model: str, output: str, **options):
    """`onnx-hawq profile`: options are ProfileConfig fields; returns the LatencyTable."""
    from onnx_hawq.planning.profiler import ProfileConfig, run_profile

    return run_profile(ProfileConfig(model=model, output=output, **options))


__all__ = ["auto", "compile", "inspect", "plan", "profile", "quantize", "sensitivity", "validate"]
