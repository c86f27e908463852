"""`python -m time_jax.port` as a whole: exit codes, one-line errors, writing through a
temporary folder that is read back, verify failures, odd --out paths, and metadata that
lets `checkpoints.load` rebuild the model without flags.

The command runs in-process (`__main__.run`) on tiny random transformers / timm models
saved to disk; ``run``'s constructor overrides stand in for the tiny sizes.
"""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file

from time_jax import checkpoints
from time_jax import models
from time_jax.port import __main__ as cli
from time_jax.port import common
from time_jax.port import hf
from time_jax.port import reference

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(embed_dim=64, depth=2, num_heads=4, patch_size=8)


def _hf_classifier(path, *, mean_pooling=True, seed=0):
  """A random tiny transformers VideoMAE classifier saved as a HF folder at ``path``."""
  cfg = transformers.VideoMAEConfig(
      image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=64,
      num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
      layer_norm_eps=1e-6, num_labels=7, use_mean_pooling=mean_pooling)
  torch.manual_seed(seed)
  model = transformers.VideoMAEForVideoClassification(cfg).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(str(path))
  return model


def _port(*argv, **overrides) -> int:
  return cli.run(cli.parse_args([str(a) for a in argv]), **overrides)


def _leftovers(folder):
  return [n for n in os.listdir(folder) if n.startswith(cli._TMP_PREFIX)]  # pylint: disable=protected-access


def _clip(seed=0):
  return np.random.default_rng(seed).standard_normal((1, 4, 32, 32, 3)).astype(np.float32)


def _hf_logits(model, x):
  with torch.no_grad():
    return model(torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy())).logits.numpy()


def test_unreadable_weight_files_exit_2_with_one_line(tmp_path, capsys):
  state = {"a": torch.randn(64, 64), "b": torch.randn(8)}
  save_file(state, str(tmp_path / "w.safetensors"))
  np.savez(tmp_path / "w.npz", a=np.ones((64, 64)))
  for name in ("w.safetensors", "w.npz"):
    data = (tmp_path / name).read_bytes()
    (tmp_path / f"cut_{name}").write_bytes(data[: len(data) // 2])
  cases = [("hf", "cut_w.safetensors", "cannot be read as a .safetensors file"),
           ("big_vision", "cut_w.npz", "cannot be read as a NumPy .npz archive"),
           ("timm", "missing.pth", "does not exist"),
           # readable, but not the model's weights
           ("timm", "w.safetensors", "not a timm ViT state dict")]
  for source, name, message in cases:
    code = _port("--from", source, "--checkpoint", tmp_path / name, "--model", "vit_s16",
                 "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == cli.EXIT_USER_ERROR != cli.EXIT_VERIFY_FAILED, (name, err)
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    if "cannot be read" in message:
      assert str(tmp_path / name) in err and "download it again" in err
      assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
  with pytest.raises(SystemExit) as e:  # argparse: one usage line, exit 2
    cli.parse_args(["--from", "timm", "--checkpoint", "x", "--model", "vit_x", "--out", "o"])
  assert e.value.code == cli.EXIT_USER_ERROR
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "notes.txt").write_text("mine")
  _hf_classifier(tmp_path / "hf")
  assert _port("--from", "hf", "--checkpoint", tmp_path / "hf", "--model", "videomae_s",
               "--out", tmp_path / "taken", **TINY) == cli.EXIT_USER_ERROR
  assert "not an earlier port" in capsys.readouterr().err
  assert os.listdir(tmp_path / "taken") == ["notes.txt"]


def test_out_paths_with_brackets_and_spaces_read_back(tmp_path):
  model = _hf_classifier(tmp_path / "hf")
  want, _ = hf.convert(common.load_weights(str(tmp_path / "hf")), "videomae_s", None, **TINY)
  system_tmp = set(_leftovers(tempfile.gettempdir()))
  # '[' in the folder (the port is written to the system's temporary folder and moved),
  # and in the name (written beside it and renamed).
  for out in (tmp_path / "run [1]" / "port", tmp_path / "runs" / "port [a] b*"):
    assert _port("--from", "hf", "--checkpoint", tmp_path / "hf", "--model", "videomae_s",
                 "--out", out, **TINY) == cli.EXIT_OK
    assert os.listdir(out.parent) == [out.name]  # no temporary folder left beside it
    got, meta = checkpoints.read_variables(str(out))
    assert common.same_variables(want, got) == []
    assert meta["model"] == "videomae_s" and meta["num_classes"] == 7
    ck = checkpoints.load(str(out))
    np.testing.assert_allclose(ck.build_model().apply(ck.variables, _clip()),
                               _hf_logits(model, _clip()), rtol=1e-4, atol=1e-5)
  assert set(_leftovers(tempfile.gettempdir())) == system_tmp
  # orbax itself would write an unreadable checkpoint there: common.save refuses.
  with pytest.raises(ValueError, match="orbax cannot write"):
    common.save(want, str(tmp_path / "x[1]"), {"model": "videomae_s"})


def test_failed_verify_leaves_nothing_at_out(tmp_path, monkeypatch, capsys):
  _hf_classifier(tmp_path / "hf")
  args = ("--from", "hf", "--checkpoint", tmp_path / "hf", "--model", "videomae_s",
          "--verify")
  out = tmp_path / "port"
  assert _port(*args, "--out", out, **TINY) == cli.EXIT_OK
  assert "verify: ok:" in capsys.readouterr().out
  good, _ = checkpoints.read_variables(str(out))

  convert = hf.convert

  def off_by_one_percent(*a, **k):  # a porting bug: one q_bias 1 % off
    variables, n = convert(*a, **k)
    attn = variables["params"]["blocks_1"]["attn"]
    attn["q_bias"] = attn["q_bias"] * 1.01  # a new array: the state's stays as it is
    return variables, n

  monkeypatch.setattr(hf, "convert", off_by_one_percent)
  for target in (out, tmp_path / "new" / "port"):
    assert _port(*args, "--out", target, **TINY) == cli.EXIT_VERIFY_FAILED
    printed = capsys.readouterr().out
    assert "verify: FAILED" in printed and "first layer that differs: blocks_1" in printed
    assert f"nothing written to {target}" in printed and "wrote" not in printed
    assert _leftovers(tmp_path) == []
  assert not (tmp_path / "new").exists()
  kept, _ = checkpoints.read_variables(str(out))  # the earlier port is untouched
  assert common.same_variables(good, kept) == []


def test_metadata_rebuilds_non_default_models_without_flags(tmp_path):
  # VideoMAE without mean pooling (norm + token 0)
  model = _hf_classifier(tmp_path / "hf", mean_pooling=False)
  out = tmp_path / "vmae"
  assert _port("--from", "hf", "--checkpoint", tmp_path / "hf", "--model", "videomae_s",
               "--out", out, **TINY) == cli.EXIT_OK
  ck = checkpoints.load(str(out))
  assert dict(ck.config.model.kwargs) == dict(TINY, use_mean_pooling=False, init_values=0.0)
  np.testing.assert_allclose(ck.build_model().apply(ck.variables, _clip()),
                             _hf_logits(model, _clip()), rtol=1e-4, atol=1e-5)
  # timm ViT with global average pooling + fc_norm and layer scale
  timm = reference.timm()
  torch.manual_seed(0)
  net = timm.models.vision_transformer.VisionTransformer(
      img_size=224, embed_dim=64, depth=2, num_heads=4, num_classes=5, global_pool="avg",
      init_values=1e-5).eval()
  with torch.no_grad():
    for p in net.parameters():
      p.add_(0.05 * torch.randn_like(p))
  save_file({k: v.contiguous() for k, v in net.state_dict().items()},
            str(tmp_path / "vit.safetensors"))
  out = tmp_path / "vit"
  assert _port("--from", "timm", "--checkpoint", tmp_path / "vit.safetensors", "--model",
               "vit_ti16", "--out", out, "--verify", embed_dim=64, depth=2,
               num_heads=4) == cli.EXIT_OK
  ck = checkpoints.load(str(out))
  kwargs = dict(ck.config.model.kwargs)
  assert kwargs["pool"] == "gap" and kwargs["init_values"] == 1e-5
  x = np.random.default_rng(1).standard_normal((2, 1, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = net(torch.from_numpy(x[:, 0].transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_allclose(ck.build_model().apply(ck.variables, x), theirs,
                             rtol=1e-4, atol=1e-5)
  # what the metadata spares: the default options do not fit these weights
  plain = models.create("vit_ti16", num_classes=5, embed_dim=64, depth=2, num_heads=4)
  with pytest.raises(Exception):
    plain.apply(ck.variables, x)


@pytest.mark.slow
def test_the_command_shows_our_lines_and_the_libraries_stay_quiet(tmp_path):
  # A full-size (tiny) timm ViT, as a user ports one: the command as typed.
  model = reference.timm().create_model("vit_tiny_patch16_224", pretrained=False,
                                        num_classes=10)
  save_file({k: v.contiguous() for k, v in model.state_dict().items()},
            str(tmp_path / "vit.safetensors"))
  out = tmp_path / "ported"
  r = subprocess.run([sys.executable, "-m", "time_jax.port", "--from", "timm",
                      "--checkpoint", str(tmp_path / "vit.safetensors"), "--model",
                      "vit_ti16", "--out", str(out)],
                     capture_output=True, text=True, timeout=300,
                     env=dict(os.environ, PYTHONPATH=REPO))
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout == f"wrote {out} (vit_ti16, 10 classes; read back identical)\n"
  lines = r.stderr.splitlines()  # before: ~47 INFO lines of Orbax and JAX
  assert len(lines) == 2 and all(re.match(r"\d\d:\d\d:\d\d [A-Z]", l) for l in lines), lines
