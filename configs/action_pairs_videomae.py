r"""VideoMAE ViT-B/16 with TIME on 3D Action Pairs (RGB or depth, cross-subject).

The recipe is ``videomae`` of `configs/paper.py`; the argument after the colon picks
the phase, modality and split (comma-separated, any order). Two phases, each in its
own workdir; the fine-tuning phase starts from ``../pretrain``::

    python -m time_jax.main --workdir W/pretrain \
        --config configs/action_pairs_videomae.py:pretrain,depth \
        --config.dataset.root=/data/action_pairs
    python -m time_jax.main --workdir W/finetune \
        --config configs/action_pairs_videomae.py:finetune,depth \
        --config.dataset.root=/data/action_pairs

The phase ``k400`` fine-tunes ported Kinetics-400 VideoMAE weights instead
(``--config.checkpoint.init_from=/abs/path/videomae_b_k400``).
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
  return _paper().videomae("action_pairs", arg, default_phase="finetune")
