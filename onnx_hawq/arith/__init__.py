"""numpy-only arithmetic: the one place each quantization fact lives."""
