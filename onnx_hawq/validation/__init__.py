"""onnx-hawq validate."""
