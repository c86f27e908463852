"""Fixtures of the diagnostics tests; helpers live in ``diagnose_helpers.py``."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diagnose_helpers as h  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="session")
def tiny_videomae(tmp_path_factory):
  """A workdir of a tiny VideoMAE classifier with class names."""
  _, variables = h.init("videomae_s", **h.TINY)
  path = tmp_path_factory.mktemp("ckpt") / "videomae"
  return h.save_workdir(path, h.tiny_config(), variables, ["left", "right", "still"])


@pytest.fixture(scope="session")
def tiny_pretrainer(tmp_path_factory):
  """A workdir of a tiny VideoMAE masked autoencoder."""
  dec = dict(decoder_embed_dim=16, decoder_num_heads=2, decoder_depth=1)
  _, variables = h.init("videomae_s_pretrain", num_classes=0, **dec, **h.TINY)
  path = tmp_path_factory.mktemp("ckpt") / "pretrain"
  return h.save_workdir(path, h.tiny_config("videomae_s_pretrain", **dec), variables)


@pytest.fixture(scope="session")
def video(tmp_path_factory):
  return h.write_video(tmp_path_factory.mktemp("video") / "clip.mp4")
