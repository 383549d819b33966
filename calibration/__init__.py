"""Sensitivity: Hessian traces and eigenvalues per layer (PyTorch, imported lazily)."""
