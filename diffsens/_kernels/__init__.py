"""C kernels and the Cython layer that drives them (no public API)."""
