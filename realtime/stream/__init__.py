"""The running pipeline: frame ring, capture threads, inference loop, start/stop order."""
