r"""VideoMAE ViT-B/16 with TIME on UWA3D Multiview II (RGB or depth, 12 cross-view splits).

The recipe is ``videomae`` of `configs/paper.py`; the argument after the colon picks
the split, modality and phase (comma-separated, any order). The default phase
``k400`` fine-tunes ported Kinetics-400 VideoMAE weights::

    python -m time_jax.main --workdir W/12-3_depth \
        --config configs/uwa3d_multiview_videomae.py:12-3,depth \
        --config.dataset.root=/data/uwa3d_multiview \
        --config.checkpoint.init_from=/abs/path/videomae_b_k400

``:34-1,rgb`` trains on views 3 and 4 and tests on view 1, RGB. The ``pretrain`` and
``finetune`` phases give the from-scratch recipe, as for the other datasets.
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
  return _paper().videomae("uwa3d_multiview", arg, default_phase="k400")
