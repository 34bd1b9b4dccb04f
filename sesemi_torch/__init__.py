"""SESEMI in PyTorch/torchvision: the readable reference. Never imports jax."""
