"""HMDB51 (official splits 1-3), ViT-B/16 from ImageNet-1K with TIME
(time_jax.recipes.image_model)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.image_model("vit_b16", "hmdb51", arg)
