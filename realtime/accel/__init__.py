"""Device code: one device/dtype resolver, on-device preprocessing and frame ring, CUDA-graph gate, the fast model."""
