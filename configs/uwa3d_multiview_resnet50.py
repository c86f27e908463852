"""UWA3D Multiview II (RGB or depth, 12 cross-view splits), ResNet-50 from ImageNet-1K
with TIME (time_jax.recipes.image_model)."""

from time_jax import recipes


def get_config(arg=None):
  return recipes.image_model("resnet50", "uwa3d_multiview", arg)
