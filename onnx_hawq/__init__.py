"""onnx-hawq: Hessian-aware mixed-precision integer quantization for ONNX models.

The commands as functions (`onnx_hawq.quantize(...)`, `onnx_hawq.plan(...)`, ...) live in
`onnx_hawq.api` and are loaded on first use, so `import onnx_hawq` stays light.
"""

from onnx_hawq.version import __version__

API = ("auto", "compile", "inspect", "plan", "profile", "quantize", "sensitivity", "validate")


def __getattr__(name: str):
    if name in API:
        from onnx_hawq import api

        return getattr(api, name)
    raise AttributeError(f"module 'onnx_hawq' has no attribute {name!r}")


__all__ = ["__version__", *API]
