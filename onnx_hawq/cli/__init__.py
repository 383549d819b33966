"""The `onnx-hawq` command line: thin click commands over library functions."""
