r"""ViT-B/16 from ImageNet-1K with TIME on 3D Action Pairs (RGB or depth, cross-subject).

The recipe is `configs/paper.py` ``image_model``; the argument after the colon picks the
modality and split (comma-separated, any order). Port the ImageNet weights once
(``python -m time_jax.port --from timm ... --model vit_b16 --out /abs/path/vit_b16_in1k``),
then::

    python -m time_jax.main --config configs/action_pairs_vit_b16.py:depth --workdir W \
        --config.dataset.root=/data/action_pairs \
        --config.checkpoint.init_from=/abs/path/vit_b16_in1k
"""

import importlib.util
import os
import sys


def _paper():
  """configs/paper.py, loaded by path once per process (configs/ is not a package)."""
  name = "time_jax_configs_paper"
  if name not in sys.modules:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper.py")
    spec = importlib.util.spec_from_file_location(name, path)
    sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[name])
  return sys.modules[name]


def get_config(arg=None):
  return _paper().image_model("vit_b16", "action_pairs", arg)
