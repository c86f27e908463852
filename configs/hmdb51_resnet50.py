r"""ResNet-50 from ImageNet-1K with TIME on HMDB51 (official splits 1-3).

The recipe is `configs/paper.py` ``image_model``; the argument after the colon picks the
modality and split (comma-separated, any order). Port the ImageNet weights once
(``python -m time_jax.port --from torchvision ... --model resnet50 --out /abs/path/resnet50_in1k``),
then::

    python -m time_jax.main --config configs/hmdb51_resnet50.py:1 --workdir W \
        --config.dataset.root=/data/hmdb51 \
        --config.checkpoint.init_from=/abs/path/resnet50_in1k
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
  return _paper().image_model("resnet50", "hmdb51", arg)
