"""onnx-hawq: Hessian-aware mixed-precision integer quantization for ONNX models."""

__version__ = "0.1.0"
