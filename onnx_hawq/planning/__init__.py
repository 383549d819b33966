"""onnx-hawq planning."""
