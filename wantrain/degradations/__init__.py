"""Degradations that turn HR clips into the LR inputs an upsampler stage trains on (plain PyTorch, PIL, PyAV)."""
