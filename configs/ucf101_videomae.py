r"""VideoMAE ViT-B/16 with TIME (N=2, T*=16) on UCF101: the paper's two-phase recipe.

The recipe is ``videomae`` of `configs/paper.py` (pretraining 3200 epochs, fine-tuning
100 epochs at base lr 5e-4, batch 128, mask ratio 0.75, N=2, spatial arrangement); the
argument after the colon picks the phase and the official split (1-3, default 1).
Two phases, each in its own workdir; the fine-tuning phase starts from ``../pretrain``::

    python -m time_jax.main --workdir W/pretrain \
        --config configs/ucf101_videomae.py:pretrain \
        --config.dataset.root=/data/UCF101 --config.dataset.split_dir=/data/ucfTrainTestlist
    python -m time_jax.main --workdir W/finetune \
        --config configs/ucf101_videomae.py:finetune \
        --config.dataset.root=/data/UCF101 --config.dataset.split_dir=/data/ucfTrainTestlist

The phase ``k400`` fine-tunes ported Kinetics-400 VideoMAE weights instead
(``--config.checkpoint.init_from=/abs/path/videomae_b_k400``, from
``python -m time_jax.port --from videomae ...``).
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
  return _paper().videomae("ucf101", arg, default_phase="finetune")
