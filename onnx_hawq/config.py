"""Frozen-dataclass configs with a versioned JSON round-trip."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from pathlib import Path

from onnx_hawq.errors import InputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and a rename. Any OSError (read-only
    or full disk, no permission) is an InputError naming the path; no temp or partial file is left, also
    when the write is interrupted."""
    path = Path(path)
    created = [p for p in path.absolute().parents if not p.exists()]  # folders this write makes
    try:
        _check_writable(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        _remove_empty(created)
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
            _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first), if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _check_writable(path: Path) -> None:
    """Refuse to replace a folder, a device or a pipe by a file (root could swap /dev/full)."""
    if path.is_dir():
        raise IsADirectoryError(21, "it is a folder")
    if path.exists() and not path.is_file():
        raise OSError("not a regular file")


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike, what: str) -> dict:
    """Read a JSON object from `path`; a missing or malformed file is an InputError."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not a JSON text file (not UTF-8)") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise InputError(f"{what} {path} is nested too deeply to be an onnx-hawq file") from None
    if not isinstance(obj, dict):
        raise InputError(f"{what} {path} must hold a JSON object")
    return obj


def _convert(tp, value, where: str):
    """Convert a JSON value to the annotated field type (nested configs, tuples, dicts)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return tp.from_dict(value)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else typing.Any
        return tuple(_convert(item, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected an object, got {type(value).__name__}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise InputError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


class JsonConfig:
    """Mixin for frozen dataclasses: to_dict/from_dict/to_json/from_json with a version."""

    VERSION: typing.ClassVar[int] = 1
    KIND: typing.ClassVar[str] = ""

    def to_dict(self) -> dict:
        out = {"kind": self.KIND, "version": self.VERSION} if self.KIND else {}
        for f in dataclasses.fields(self):
            out[f.name] = _to_jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise InputError(f"{cls.__name__}: expected a JSON object")
        if cls.KIND:
            if data.get("kind") != cls.KIND:
                raise InputError(f"not a {cls.KIND} file (kind={data.get('kind')!r})")
            if data.get("version") != cls.VERSION:
                raise InputError(
                    f"{cls.KIND} version {data.get('version')!r} is not supported "
                    f"(this onnx-hawq reads version {cls.VERSION})"
                )
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"kind", "version"})
        if unknown:
            raise InputError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kwargs = {k: _convert(hints[k], v, f"{cls.__name__}.{k}") for k, v in data.items() if k in names}
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise InputError(f"{cls.__name__}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str):
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise InputError(f"{cls.__name__}: invalid JSON: {e.msg}") from None

    def save(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path, what: str | None = None):
        return cls.from_dict(read_json(path, what or cls.KIND or cls.__name__))


def _to_jsonable(v):
    if dataclasses.is_dataclass(v):
        return v.to_dict() if isinstance(v, JsonConfig) else dataclasses.asdict(v)
    if isinstance(v, (tuple, list)):
        return [_to_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_jsonable(x) for k, x in v.items()}
    return v
