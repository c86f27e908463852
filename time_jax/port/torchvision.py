"""torchvision ResNet-50 state dicts -> `time_jax.models.resnet`.

torchvision's ``resnet50`` (``IMAGENET1K_V1`` / ``V2`` files) and timm's ``resnet50`` have
the same architecture (v1.5: stride on the 3×3 convolution) and the same keys, so the
conversion is `time_jax.port.timm.convert_resnet`. `verify` runs the weights in timm's
``resnet50`` (torchvision's own package cannot run beside the CPU torch; see
`time_jax.port.reference`), which computes torchvision's function.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from time_jax.port import timm as timm_port


def convert(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
            **overrides) -> tuple[dict[str, Any], int]:
  """torchvision weights -> ``(variables, num_classes)`` of ``model_name`` (resnet50)."""
  return timm_port.convert_resnet(state, model_name, num_classes,
                                  source="torchvision ResNet state dict", **overrides)


def build(state: Mapping[str, np.ndarray], model_name: str, num_classes: int | None,
          **overrides):
  """The model `convert` fills and its class count (`time_jax.port.timm.build`)."""
  return timm_port.build(state, model_name, num_classes, **overrides)


def verify(state: Mapping[str, np.ndarray], variables: Mapping[str, Any], model_name: str,
           num_classes: int, **kwargs):
  """Layer-by-layer comparison of the reference ResNet-50 and ours (a `compare.Report`)."""
  return timm_port.verify(state, variables, model_name, num_classes, **kwargs)
