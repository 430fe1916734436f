"""The label feed's client side: subscribe to a running pipeline's ZeroMQ events."""
