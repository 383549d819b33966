"""The onnx-hawq version (kept apart so every layer may read it)."""

__version__ = "0.1.0"
