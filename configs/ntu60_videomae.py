r"""VideoMAE ViT-B/16 with TIME on NTU RGB+D 60 (RGB or depth; xsub or xview).

The recipe is ``videomae`` of `configs/paper.py`; the argument after the colon picks
the phase, modality and split (comma-separated, any order). Two phases, each in its
own workdir; the fine-tuning phase starts from ``../pretrain``::

    python -m time_jax.main --workdir W/pretrain \
        --config configs/ntu60_videomae.py:pretrain,depth,xview \
        --config.dataset.root=/data/ntu60
    python -m time_jax.main --workdir W/finetune \
        --config configs/ntu60_videomae.py:finetune,depth,xview \
        --config.dataset.root=/data/ntu60

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
  return _paper().videomae("ntu60", arg, default_phase="finetune")
