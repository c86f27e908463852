"""ResNet-50 (He et al., 2016) in Flax linen, in the torchvision / timm v1.5 layout.

The image model of the paper, applied to video frame by frame: a clip
``x: [batch, time, H, W, c]`` is flattened to ``batch·time`` images and the logits are
averaged over time (TSN consensus); ``time = 1`` is a single TIME grid image.

Module names follow torchvision so ported weights map one to one: ``conv1``/``bn1`` (7×7
stride 2 stem), a 3×3 stride-2 max pool, stages ``layer{s}_{b}`` (torchvision's
``layer{s}.{b}``; bottlenecks with the stride on the 3×3 convolution, v1.5) holding
``conv1..3``/``bn1..3`` and ``downsample_conv``/``downsample_bn``, global average pooling
and ``fc``. BatchNorm uses PyTorch's eps 1e-5 and momentum 0.1 (Flax momentum 0.9).

BatchNorm statistics: in training (``train=True``, ``mutable=['batch_stats']``) the
mean and variance are those of the whole global batch (all frames): under ``jax.jit``
with the batch sharded over the mesh's data axes, the reduction spans every device, so
the statistics are synchronised without a ``pmap`` axis name. With ``frozen_bn=True``
the running statistics are used and never updated (the usual choice for small batches
when fine-tuning from ImageNet).

Sows into ``'intermediates'`` (when mutable) each bottleneck's output
``layer{s}_{b}/out: [batch·time, h, w, 4·width]`` and ``pre_logits``. Convolution outputs
(``conv1``, ``layer1_0/conv2``, ...) are the modules' own outputs: take them with
``capture_intermediates`` (`time_jax.diagnose.features` does).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from time_jax.models import ops

Dtype = Any

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # Flax's decay of the running average = 1 - PyTorch's momentum 0.1
STAGES_50 = (3, 4, 6, 3)

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # kaiming fan_out


class Conv(nn.Module):
  """A bias-free ``kernel × kernel`` convolution with PyTorch's symmetric padding.

  One parameter ``kernel: [k, k, in, out]`` (as ``nn.Conv``), computed by the kernel of
  ``impl`` (`ops.conv`): XLA's convolution, or with ``'cpu'`` and ``k <= 3`` as a matrix
  product (`ops.im2col_conv`). The two agree to float rounding.
  """
  features: int
  kernel: int
  stride: int = 1
  dtype: Dtype = jnp.float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``x: [images, h, w, in]`` -> ``[images, ceil(h/stride), ceil(w/stride), out]``."""
    k = self.kernel
    kernel = self.param("kernel", nn.with_logical_partitioning(
        _conv_init, (None, None, "conv_in", "conv_out")),
        (k, k, x.shape[-1], self.features), jnp.float32).astype(self.dtype)
    return ops.conv(x.astype(self.dtype), kernel, self.stride, self.impl)


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str,
          impl: str) -> Conv:
  return Conv(features, kernel, stride, dtype, impl, name=name)


def _bn(train: bool, frozen: bool, dtype: Dtype, name: str, zero: bool = False) -> nn.BatchNorm:
  return nn.BatchNorm(
      use_running_average=frozen or not train, momentum=BN_MOMENTUM, epsilon=BN_EPS,
      dtype=dtype, param_dtype=jnp.float32, name=name,
      scale_init=nn.with_logical_partitioning(
          nn.initializers.zeros if zero else nn.initializers.ones, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)))


class Bottleneck(nn.Module):
  """1×1 -> 3×3 (stride here, v1.5) -> 1×1 (×4) with a projection shortcut when needed."""
  width: int
  stride: int = 1
  frozen_bn: bool = False
  zero_init_last: bool = True
  dtype: Dtype = jnp.float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """``x: [images, h, w, c]`` -> ``[images, h/stride, w/stride, 4·width]``."""
    bn = functools.partial(_bn, train, self.frozen_bn, self.dtype)
    out_ch = 4 * self.width
    y = _conv(self.width, 1, 1, self.dtype, "conv1", self.impl)(x)
    y = nn.relu(bn("bn1")(y))
    y = _conv(self.width, 3, self.stride, self.dtype, "conv2", self.impl)(y)
    y = nn.relu(bn("bn2")(y))
    y = _conv(out_ch, 1, 1, self.dtype, "conv3", self.impl)(y)
    y = bn("bn3", zero=self.zero_init_last)(y)
    if self.stride != 1 or x.shape[-1] != out_ch:
      x = bn("downsample_bn")(_conv(out_ch, 1, self.stride, self.dtype, "downsample_conv",
                                    self.impl)(x))
    y = nn.relu(y + x)
    self.sow("intermediates", "out", y)
    return y


class ResNet(nn.Module):
  """ResNet classifier on clips; see the module docstring.

  Attributes:
    num_classes: ``fc`` outputs; 0 returns pooled features ``[batch, 2048]``.
    stages: bottlenecks per stage ((3, 4, 6, 3) for ResNet-50).
    frozen_bn: use (and keep) the running BatchNorm statistics in training too.
    zero_init_last: start each block's last BatchNorm scale at 0 (timm's default; no
      effect on ported weights).
    dropout_rate: dropout before ``fc`` (rng ``'dropout'``).
    dtype: compute dtype; parameters and statistics are float32.
    impl: the kernel set, ``'auto'``, ``'cpu'``, ``'gpu'`` or ``'xla'`` (`ops.resolve`;
      see `Conv`); the same parameters for all.
  """
  num_classes: int = 1000
  stages: Sequence[int] = STAGES_50
  frozen_bn: bool = False
  zero_init_last: bool = True
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """``x: [batch, time, H, W, c]`` -> logits ``[batch, num_classes]`` (time-averaged)."""
    if x.ndim != 5:
      raise ValueError(f"ResNet takes clips [batch, time, H, W, c]; got shape {x.shape}.")
    batch, time = x.shape[:2]
    h = x.reshape(batch * time, *x.shape[2:]).astype(self.dtype)
    h = _conv(64, 7, 2, self.dtype, "conv1", self.impl)(h)
    h = nn.relu(_bn(train, self.frozen_bn, self.dtype, "bn1")(h))
    h = nn.max_pool(h, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for s, blocks in enumerate(self.stages):
      for b in range(blocks):
        h = Bottleneck(64 * 2 ** s, stride=2 if b == 0 and s > 0 else 1,
                       frozen_bn=self.frozen_bn, zero_init_last=self.zero_init_last,
                       dtype=self.dtype, impl=self.impl,
                       name=f"layer{s + 1}_{b}")(h, train=train)
    h = h.mean(axis=(1, 2)).reshape(batch, time, -1)
    self.sow("intermediates", "pre_logits", h.mean(axis=1))
    if not self.num_classes:
      return h.mean(axis=1)
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    logits = nn.Dense(
        self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc",
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                 ("conv_out", "classes")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("classes",)))(h)
    return logits.mean(axis=1)  # TSN consensus over the T* frames


def resnet50(*, num_classes: int = 1000, image_size: int = 224, num_frames: int = 1,
             dtype: Dtype = jnp.float32, **kwargs) -> ResNet:
  """ResNet-50 v1.5; ``kwargs`` override `ResNet` attributes.

  ``image_size`` and ``num_frames`` are accepted for the common constructor signature:
  the network is fully convolutional and frames are independent images.
  """
  del image_size, num_frames
  return ResNet(num_classes=num_classes, dtype=dtype, **kwargs)
