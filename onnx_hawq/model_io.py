"""Loading models and data with one-line errors; saving models atomically."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import onnx

from onnx_hawq.config import atomic_write_bytes
from onnx_hawq.errors import InputError

_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64, onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32, onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8, onnx.TensorProto.BOOL: np.bool_,
}


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read and check an ONNX file; anything unreadable is an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError and others
        raise InputError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    if not model.graph.node:
        raise InputError(f"{path} is not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise InputError(f"{path} fails onnx.checker: {first}") from None
    check_runtime_accepts(model, path)
    return model


_RUNTIME_VERDICTS: dict[tuple, str | None] = {}


def check_runtime_accepts(model: onnx.ModelProto, path) -> None:
    """Refuse a model whose IR version or opsets the installed onnxruntime rejects (one line, exit 2).
    Probes a one-node model stamped with the same versions, so it costs nothing on large models."""
    key = (model.ir_version, tuple(sorted((o.domain, o.version) for o in model.opset_import)))
    if key not in _RUNTIME_VERDICTS:
        _RUNTIME_VERDICTS[key] = _runtime_verdict(model)
    reason = _RUNTIME_VERDICTS[key]
    if reason:
        import onnxruntime

        raise InputError(f"{path} is too new for the installed onnxruntime {onnxruntime.__version__}: {reason}")


def _runtime_verdict(model: onnx.ModelProto) -> str | None:
    """None when onnxruntime loads a model of `model`'s IR version and opsets, else why not (short)."""
    import re

    from onnx_hawq.ort import first_line, session

    vi = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    vo = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "probe", [vi], [vo])
    probe = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    probe.ir_version = model.ir_version
    if not any(o.domain in ("", "ai.onnx") for o in probe.opset_import):
        probe.opset_import.append(onnx.helper.make_opsetid("", 17))
    try:
        session(probe)
    except Exception as e:  # onnxruntime's own exception types
        text = str(e)
        ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
        if ir:
            return f"IR version {ir[1]} (it reads up to {ir[2]})"
        opset = re.search(r"Opset (\d+) is under development.*?domain (\S+) is till opset (\d+)", text, re.S)
        if opset:
            return f"opset {opset[1]} of {opset[2]} (it reads up to {opset[3]})"
        if re.search(r"opset|IR version", text, re.I):
            return first_line(e).split("] ", 1)[-1][:200]
    return None


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike, others=()) -> Path:
    """Refuse an output path that names one of the command's `inputs` or its `others` outputs, or
    that cannot be written (checked before any work, so a failing command leaves nothing behind)."""
    out = Path(output)
    for src in inputs:
        if src is not None and out.resolve() == Path(src).resolve():
            raise InputError(f"output path {out} is the input file; choose another -o")
    for dst in others:
        if dst is not None and out.resolve() == Path(dst).resolve():
            raise InputError(f"output path {out} is another output of this command; choose another path")
    _check_folder_writable(out)
    return out


def _check_folder_writable(out: Path) -> None:
    """The nearest existing folder above `out` must be a folder we may write into."""
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {out}: {parent} is not writable")


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Serialize `model` to `path` atomically (temp file + rename)."""
    atomic_write_bytes(path, model.SerializeToString())


def input_specs(model: onnx.ModelProto) -> dict[str, tuple[tuple, np.dtype]]:
    """Map graph input name -> (shape with None for symbolic dims, numpy dtype)."""
    inits = {i.name for i in model.graph.initializer}
    specs = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        specs[vi.name] = (dims, np.dtype(_NP_TYPES.get(tt.elem_type, np.float32)))
    return specs


def load_data(path: str | os.PathLike, model: onnx.ModelProto, what: str = "data") -> dict[str, np.ndarray]:
    """Load a .npz whose arrays are named after the model inputs; check names, ranks, dims, dtypes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    arrays = read_npz(path, what)
    specs = input_specs(model)
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise InputError(
            f"{what} file {path} lacks array(s) for model input(s) {', '.join(missing)}; "
            f"it has {', '.join(arrays) or 'none'}"
        )
    out, count = {}, None
    for name, (shape, dtype) in specs.items():
        arr = arrays[name]
        _check_array(name, arr, shape, dtype, path)
        if count is not None and arr.shape[0] != count:
            raise InputError(f"{what} file {path}: inputs disagree on the number of samples")
        count = arr.shape[0]
        out[name] = arr.astype(dtype, copy=False)
    if not count:
        raise InputError(f"{what} file {path} holds no samples")
    return out


def read_npz(path: Path, what: str = "data") -> dict[str, np.ndarray]:
    """The named arrays of a .npz (a zip that np.savez wrote); a .npy, a non-zip or a damaged file is an
    InputError."""
    if not zipfile.is_zipfile(path):
        hint = ("a single .npy array: save it with np.savez(path, INPUT_NAME=array)" if _is_npy(path)
                else "not a zip file")
        raise InputError(f"{what} file {path} is not a readable .npz ({hint})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise InputError(f"{what} file {path} is not a readable .npz ({type(e).__name__})") from None


def _is_npy(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def _check_array(name, arr, shape, dtype, path) -> None:
    if arr.ndim != len(shape):
        raise InputError(f"{path}: array {name!r} has rank {arr.ndim}, model input wants {len(shape)} {_fmt(shape)}")
    for i, (got, want) in enumerate(zip(arr.shape, shape)):
        if i > 0 and want is not None and got != want:
            raise InputError(f"{path}: array {name!r} has shape {arr.shape}, model input wants {_fmt(shape)}")
    if np.issubdtype(dtype, np.floating) != np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_:
        raise InputError(f"{path}: array {name!r} has dtype {arr.dtype}, model input wants {dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: array {name!r} holds NaN or infinite values")


def _fmt(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size the model's inputs fix (first dim), or None when it is symbolic."""
    dims = {shape[0] for shape, _ in input_specs(model).values() if shape}
    return dims.pop() if len(dims) == 1 and None not in dims else None


def batches(data: dict[str, np.ndarray], batch_size: int):
    """Yield dicts of consecutive slices of every array (first axis)."""
    n = len(next(iter(data.values())))
    for start in range(0, n, batch_size):
        yield {k: v[start:start + batch_size] for k, v in data.items()}


def padded_batches(data: dict[str, np.ndarray], batch_size: int, pad: bool):
    """Yield (feeds, count): `batches` of every array; with `pad` (a fixed-batch model) a short last
    batch is filled up to `batch_size` by repeating its last sample, and `count` is its real rows."""
    for feeds in batches(data, batch_size):
        count = len(next(iter(feeds.values())))
        if pad and count < batch_size:
            feeds = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - count, axis=0)]) for k, v in feeds.items()}
        yield feeds, count


def unpad(value: np.ndarray, count: int, batch_size: int) -> np.ndarray:
    """The real rows of a result of a padded batch: the first `count` when its first axis is the
    batch (other tensors are returned as they are; padding repeats a real sample)."""
    if count < batch_size and value.ndim and value.shape[0] == batch_size:
        return value[:count]
    return value


def load_model_any(path: str | os.PathLike) -> onnx.ModelProto:
    """`load_model` for a model of any size: external data loaded, the path-based onnx.checker
    (models over 2 GB cannot be checked as one message); one-line InputErrors."""
    from onnx_hawq.large_models import load

    model = load(path)
    check_runtime_accepts(model, path)
    return model


def save_model_any(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """`save_model` for a model of any size: a large one (see `large_models.LARGE_BYTES`) is written
    as `path` plus its weights in `path.data`, both atomically."""
    from onnx_hawq.large_models import is_large, save

    if is_large(model):
        save(model, path)
    else:
        save_model(model, path)


def check_model_output_path(output: str | os.PathLike, model_inputs=(), other_inputs=(), others=()) -> Path:
    """`check_output_path` for a model output: neither it nor its external data file (`output.data`)
    may be an input, an input model's external data file, or another output."""
    from onnx_hawq.large_models import external_data_path, model_files

    inputs = [f for m in model_inputs if m is not None for f in model_files(m)] + list(other_inputs)
    out = check_output_path(output, *inputs, others=others)
    check_output_path(external_data_path(output), *inputs, others=[*others, output])
    return out
