"""onnx-hawq compile."""
