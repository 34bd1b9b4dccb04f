"""SESEMI in JAX/Flax/Optax: pure, jit-compiled steps. Never imports torch."""
