"""onnx-hawq compile: exact TVM Relax converters for our integer ONNX ops; int8 kernels; building and running.

`frontend`, `converters`, `relax_ops`, `dispatch` and `cpu_schedule` import tvm (the `tvm` extra);
`build`, `vnni`, `kernels`, `kernels_conv` and `cuda_mma` import it only when called.
"""
