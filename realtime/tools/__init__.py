"""Offline jobs: classify a file, evaluate, fine-tune, benchmark."""
