"""time_jax: video action recognition in JAX/Flax with the TIME layer."""

__version__ = "0.1.0"
