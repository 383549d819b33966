"""Models whose protobuf would pass 2 GB: weights kept out of the protobuf (ONNX external data).

protobuf refuses to serialize a message over 2 GB, so `SerializeToString`, `onnx.checker.check_model(model)`,
`onnx.shape_inference.infer_shapes(model)` and `InferenceSession(bytes)` all fail on such a model.
Here a model counts as large above `LARGE_BYTES` (~1.8 GB, leaving headroom). For a large model:

* shape inference runs on a *weightless* copy (big initializers keep name, type and dims, their bytes
  are left out), and the inferred value_info is copied back;
* writing puts every big initializer's bytes into one data file beside the model, `<name>.data`,
  with offsets recorded in the tensors (onnx's external-data format), without touching the
  in-memory model; `save` writes both files into a temp folder and renames them into place;
* checking and onnxruntime load from such a written copy (the path-based checker, a session from
  the path), so nothing is serialized as one message.

Memory stays about one copy of the weights: the light protobuf is small and the data file is
written tensor by tensor.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnx_hawq.errors import HawqError, InputError

LARGE_BYTES = 1_800_000_000  # above this a model is written with external data
INLINE_BYTES = 1024  # initializers up to this size stay in the protobuf (shape constants)
_STRIPPED = "__onnx_hawq_weightless__"


def tensor_bytes(t: onnx.TensorProto) -> int:
    """Bytes of one initializer's data (raw or typed fields)."""
    if t.HasField("raw_data"):
        return len(t.raw_data)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return int(next((e.value for e in t.external_data if e.key == "length"), 0))
    return int(np.prod(t.dims, dtype=np.int64)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize


def data_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all initializers of the main graph: what decides whether a model is large."""
    return sum(tensor_bytes(t) for t in model.graph.initializer)


def is_large(model: onnx.ModelProto) -> bool:
    return data_bytes(model) > LARGE_BYTES


def _copy_fields(src, dst, skip: str) -> None:
    """Copy every set field of protobuf message `src` into `dst` except the field `skip`."""
    for desc, value in src.ListFields():
        if desc.name == skip:
            continue
        if desc.label == desc.LABEL_REPEATED:
            getattr(dst, desc.name).extend(value)
        elif desc.type == desc.TYPE_MESSAGE:
            getattr(dst, desc.name).CopyFrom(value)
        else:
            setattr(dst, desc.name, value)


def _big(t: onnx.TensorProto) -> bool:
    return t.data_type != onnx.TensorProto.STRING and tensor_bytes(t) > INLINE_BYTES


def _light(t: onnx.TensorProto, location: str, offset: int, length: int) -> onnx.TensorProto:
    """`t` without its bytes, pointing at `length` bytes at `offset` of the file `location`."""
    out = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims, doc_string=t.doc_string)
    out.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = out.external_data.add()
        entry.key, entry.value = key, value
    return out


def _with_initializers(model: onnx.ModelProto, inits) -> onnx.ModelProto:
    """A copy of `model` whose main graph holds `inits` instead of its initializers (weights not copied)."""
    out = onnx.ModelProto()
    _copy_fields(model, out, "graph")
    _copy_fields(model.graph, out.graph, "initializer")
    out.graph.initializer.extend(inits)
    return out


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """A small copy of `model` for shape inference: big initializers keep name, type and dims only."""
    inits = [_light(t, _STRIPPED, 0, 0) if _big(t) else t for t in model.graph.initializer]
    return _with_initializers(model, inits)


def infer_shapes(model: onnx.ModelProto, **kwargs) -> onnx.ModelProto:
    """onnx shape inference for any size: a new inferred model when small; for a large model the
    inferred value_info is added to `model` itself (no 2 GB copy) and `model` is returned."""
    if not is_large(model):
        return onnx.shape_inference.infer_shapes(model, **kwargs)
    inferred = onnx.shape_inference.infer_shapes(weightless(model), **kwargs)
    known = {v.name for v in model.graph.value_info}
    model.graph.value_info.extend(v for v in inferred.graph.value_info if v.name not in known)
    return model


def shapes_only(model: onnx.ModelProto, **kwargs) -> onnx.ModelProto:
    """An inferred model to read shapes and types from (weightless when `model` is large); `model`
    itself is left as it is."""
    if not is_large(model):
        return onnx.shape_inference.infer_shapes(model, **kwargs)
    return onnx.shape_inference.infer_shapes(weightless(model), **kwargs)


def _raw(t: onnx.TensorProto) -> bytes:
    if t.HasField("raw_data"):
        return t.raw_data
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise HawqError(f"initializer {t.name} holds no data (external data not loaded)")
    return numpy_helper.to_array(t).tobytes()


def write_external(model: onnx.ModelProto, folder: str | os.PathLike, name: str) -> Path:
    """Write `model` as `folder/name` with its big initializers in `folder/name.data`; `model` is
    left as it is. Returns the model file's path."""
    folder, location = Path(folder), f"{name}.data"
    inits, offset = [], 0
    with open(folder / location, "wb") as data:
        for t in model.graph.initializer:
            if not _big(t):
                inits.append(t)
                continue
            pad = -offset % 64  # keep tensors aligned (onnx's own writer aligns for mmap as well)
            data.write(b"\0" * pad)
            raw = _raw(t)
            inits.append(_light(t, location, offset + pad, len(raw)))
            data.write(raw)
            offset += pad + len(raw)
        data.flush()
        os.fsync(data.fileno())
    light = _with_initializers(model, inits)
    with open(folder / name, "wb") as f:
        f.write(light.SerializeToString())
        f.flush()
        os.fsync(f.fileno())
    return folder / name


def external_data_path(path: str | os.PathLike) -> Path:
    """Where `save` puts the weights of a large model written to `path`."""
    path = Path(path)
    return path.with_name(f"{path.name}.data")


def save(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write a large `model` to `path` plus `path.data`, atomically: both files are written into a
    temp folder beside `path` and renamed into place (the data file first)."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_external(model, tmp, path.name)
        os.replace(tmp / f"{path.name}.data", external_data_path(path))
        os.replace(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def written(model: onnx.ModelProto):
    """Within the block, the path of a temporary external-data copy of `model`."""
    with tempfile.TemporaryDirectory(prefix="onnx_hawq_") as tmp:
        yield str(write_external(model, tmp, "model.onnx"))


def session(model: onnx.ModelProto, options=None):
    """An onnxruntime CPU session of `model` of any size (a large one is loaded from a written copy;
    the session keeps its own copy of the weights, so the files go when it is built)."""
    import onnxruntime as ort

    if not is_large(model):
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    with written(model) as path:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def check(model: onnx.ModelProto) -> None:
    """onnx.checker on a model of any size (path-based for a large one); raises ValidationError."""
    if not is_large(model):
        onnx.checker.check_model(model)
        return
    with written(model) as path:
        onnx.checker.check_model(path)


def load(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file and its external data; check it with the path-based checker (any size).
    Unreadable or invalid files are InputErrors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=True)
    except FileNotFoundError as e:
        raise InputError(f"{path}: external data file missing: {e.filename or e}") from None
    except Exception as e:  # protobuf raises DecodeError and others
        raise InputError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    if not model.graph.node:
        raise InputError(f"{path} is not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise InputError(f"{path} fails onnx.checker: {first}") from None
    return model


def model_files(path: str | os.PathLike) -> list[Path]:
    """The ONNX file at `path` and the external data files its initializers name (those that exist)."""
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable: load() will say so; here only the file itself counts
        return [path]
    found = {e.value for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
             for e in t.external_data if e.key == "location"}
    return [path, *(path.parent / f for f in sorted(found) if (path.parent / f).is_file())]
