"""Reusable click option groups, shared by the commands."""

from __future__ import annotations

import logging

import click

log = logging.getLogger("onnx_hawq")


def _set_verbosity(ctx, param, value):
    if value is None:
        return value
    if param.name == "verbose" and value:
        logging.getLogger("onnx_hawq").setLevel(logging.DEBUG if value > 1 else logging.INFO)
    if param.name == "quiet" and value:
        logging.getLogger("onnx_hawq").setLevel(logging.ERROR)
        ctx.meta["onnx_hawq.quiet"] = True
    return value


def verbosity(f):
    """-v/--verbose (repeatable) and -q/--quiet."""
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
                     help="Print only errors (no progress bars).")(f)
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
                        help="More log output (-vv for debug).")(f)


def is_quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("onnx_hawq.quiet"))


def model_argument(f):
    """The input ONNX model (positional)."""
    return click.argument("model", type=click.Path(dir_okay=False))(f)


def output_option(help_text: str, required: bool = True):
    def deco(f):
        return click.option("-o", "--output", type=click.Path(dir_okay=False), required=required,
                            help=help_text)(f)
    return deco


def bits_options(f):
    """--bits (uniform spec) or --bits-from (plan.json)."""
    f = click.option("--bits-from", "bits_from", type=click.Path(dir_okay=False),
                     help="plan.json with per-layer bits (from `onnx-hawq plan`).")(f)
    return click.option("--bits", "bits", default=None,
                        help="Uniform bits instead of a plan: 8, w8a8, w4a8, w4a4 ...")(f)


def data_option(name: str = "--data", help_text: str = "Input samples (.npz, arrays named after the model inputs).",
                required: bool = True):
    def deco(f):
        return click.option(name, type=click.Path(dir_okay=False), required=required, help=help_text)(f)
    return deco


def batch_size_option(f):
    return click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
                        help="Samples per onnxruntime run.")(f)


def progress(iterable, total=None, desc=""):
    """A tqdm progress bar on stderr unless -q was given."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=is_quiet(), leave=False)


def hessian_options(f):
    """Sensitivity estimation: --method, --nproc, --device, --max-iter, --tol, --eigen-iter, --eigen-tol, --batches, --batch-size,
    --seed, --blocks, --max-seconds, --deflate."""
    opts = [
        click.option("--method", type=click.Choice(["trace", "eigen", "both", "perturbation"]), default="trace",
                     show_default=True,
                     help="Average Hessian trace (Hutchinson), top eigenvalue (power iteration), both, or "
                          "perturbation: the measured loss change per layer and bit-width in onnxruntime "
                          "(forward only, any model onnxruntime runs)."),
        click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
                     help="Data-parallel torch.distributed workers for the Hessian (gloo on CPU, NCCL on CUDA); "
                          "under torchrun leave it at 1."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                     help="Where the Hessian-vector products run."),
        click.option("--max-iter", type=click.IntRange(2), default=200, show_default=True,
                     help="Hutchinson vectors at most."),
        click.option("--tol", type=click.FloatRange(0, min_open=True), default=0.05, show_default=True,
                     help="Stop once every layer's trace has standard error / |trace| below this."),
        click.option("--eigen-iter", type=click.IntRange(1), default=100, show_default=True,
                     help="Power iterations per layer at most."),
        click.option("--eigen-tol", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True,
                     help="Stop power iteration once the eigenvalue changes by less than this, relatively."),
        click.option("--batches", type=click.IntRange(1), default=4, show_default=True,
                     help="Data batches the Hessian is averaged over."),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
                     help="Samples per batch (with --data)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random vectors."),
        click.option("--blocks", type=click.Choice(["shared", "layer"]), default="shared", show_default=True,
                     help="shared: one Hessian-vector product per vector for all layers; layer: one per layer "
                          "(no cross-layer noise, each layer stops on its own)."),
        click.option("--max-seconds", type=click.FloatRange(0, min_open=True), default=None,
                     help="Wall-clock budget of the trace estimate (results then depend on the machine)."),
        click.option("--deflate", type=click.IntRange(0), default=0, show_default=True, metavar="K",
                     help="With --blocks layer: trace a K-vector sketch of each block's range exactly and "
                          "sample only the rest (Hutch++; far fewer vectors on near-low-rank blocks)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def loss_option(f):
    """--loss: the label-free Hessian loss of the ONNX route."""
    return click.option("--loss", type=click.Choice(["kl", "mse"]), default="kl", show_default=True,
                        help="Without labels, the distance to the model's own float outputs: kl for classifier "
                             "logits, mse for embeddings or regression outputs.")(f)


def threshold_options(f):
    """The validation gate: --min-sqnr, --min-cosine, --min-top1-agreement, --max-accuracy-drop
    (each a number, or 'none' to switch the check off)."""
    opts = [
        click.option("--min-sqnr", metavar="DB", default="20", show_default=True,
                     help="Smallest SQNR (dB) allowed on every output ('none' switches the check off)."),
        click.option("--min-cosine", metavar="C", default=None,
                     help="Smallest mean per-sample cosine similarity allowed on every output, e.g. 0.999."),
        click.option("--min-top1-agreement", metavar="PCT", default=None,
                     help="Smallest top-1 agreement (%) of the models on classification outputs, e.g. 99."),
        click.option("--max-accuracy-drop", metavar="PT", default="1", show_default=True,
                     help="Largest accuracy drop in percentage points, float minus quantized (checked only with "
                          "--labels; 'none' switches it off)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def layerwise_options(f):
    """--layerwise and --plot of the validation report."""
    f = click.option("--plot", type=click.Path(dir_okay=False),
                     help="Write the layer-wise SQNR plot (PNG); implies --layerwise.")(f)
    return click.option("--layerwise", is_flag=True,
                        help="Rank every integer node by its error against the float graph's tensor.")(f)


def backends_option(f):
    """--backends: where the quantized model runs; each besides ort must equal onnxruntime bit for bit."""
    return click.option("--backends", default="ort", show_default=True,
                        help="Comma-separated backends to run the quantized model on; each besides ort must "
                             "equal onnxruntime bit for bit (ort, reference).")(f)


def classes_axis_option(f):
    """--classes-axis: where the outputs hold class scores (top-1 agreement and accuracy)."""
    return click.option("--classes-axis", type=int, default=None, metavar="K",
                        help="Axis of the class scores in the outputs, for top-1 agreement and --labels (e.g. -1 "
                             "for [N, T, C]) [default: only 2-D [N, C] outputs are classifiers].")(f)


def weights_options(rounding_default: str):
    """--rounding and --weight-range: how weights are quantized (unset: `rounding_default`'s rule)."""
    def deco(f):
        f = click.option("--weight-range", type=click.Choice(["full", "avx2"]), default=None,
                         help="full: |w_q| up to 2^(b-1)-1, exact in onnxruntime on AVX512-VNNI/AVX-VNNI/AMX-INT8 "
                              "CPUs, in --format integer and TVM; avx2: cap 8-bit weights on 8-bit inputs at "
                              "|w_q| <= 64 so onnxruntime's AVX2-only u8s8 kernel cannot saturate. Default: the "
                              "range this CPU's onnxruntime is exact at (or the plan's).")(f)
        return click.option("--rounding", type=click.Choice(["gptq", "nearest"]), default=None,
                            help="Weight rounding: gptq (second-order, data-driven, with scale search and bias "
                                 f"correction) or nearest [default: {rounding_default}].")(f)
    return deco
