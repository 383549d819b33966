"""onnx-hawq compile: exact TVM Relax converters for our integer ONNX ops; building and running.

`frontend`, `converters` and `relax_ops` import tvm (the `tvm` extra); `build` imports it when
called; `intmath` and `ranges` need only numpy and onnx and also serve the integer ONNX form.
"""
