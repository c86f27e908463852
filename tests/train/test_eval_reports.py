"""Evaluation reports: view averaging, top-5 only with more than 5 classes, and videos
that cannot be decoded left out, counted and listed by path in ``eval_results.json``."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from time_jax import config as config_lib
from time_jax.data import config as data_config
from time_jax.data import pipeline
from time_jax.data import transforms
from time_jax.data.base import DecodeError, Record, Splits
from time_jax.train import metrics
from time_jax.train import sharding
from time_jax.train import tasks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _batch(rows):
  """``rows``: ``(logits, label, index, valid)`` per element -> the four arrays."""
  logits, label, index, valid = zip(*rows)
  return (np.asarray(logits, np.float32), np.asarray(label), np.asarray(index),
          np.asarray(valid))


def test_accumulator_averages_views_and_lists_undecodable_videos():
  acc = metrics.EvalAccumulator(7)
  e = np.eye(7)
  # video 0 (label 2): views say 2 then 3, mean favours 2; video 1 (label 4): one view
  # decoded (says 5, then 4), one failed; video 2 (label 1): both views failed; -1 is
  # padding.
  acc.add(*_batch([(3 * e[2], 2, 0, True), (e[3], 2, 0, True),
                   (2 * e[5] + e[4], 4, 1, True)]))
  acc.add(*_batch([(e[0], 4, 1, False), (e[1], 1, 2, False), (e[1], 1, 2, False),
                   (e[6], 0, -1, False)]))
  r = acc.result()
  assert r["num_videos"] == 2
  assert r["excluded"] == [2] and r["partial"] == [1] and r["failed_views"] == 3
  assert r["top1"] == 0.5  # video 0 right, video 1 wrong, video 2 in no metric
  assert r["confusion"].sum() == 2 and r["confusion"][2, 2] == 1 and r["confusion"][4, 5] == 1
  assert np.isnan(r["per_class"][1])  # its only video was excluded
  assert r["top5"] == 1.0  # video 1's label has its second highest logit
  assert acc.tally.scalars() == {"eval/num_videos": 2, "eval/excluded": 1,
                                 "eval/partial": 1, "eval/failed_views": 3}


def test_softmax_merge_is_the_mean_of_the_views_softmaxes():
  """VideoMAE's merge: a video's score is the mean of its views' softmaxes, which can
  pick another class than the mean of the logits."""
  views = np.array([[10.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0]])
  soft = metrics.merge_views(views, "softmax")
  e = np.exp(views - views.max(1, keepdims=True))
  np.testing.assert_allclose(soft, (e / e.sum(1, keepdims=True)).mean(0), rtol=1e-12)
  mean = views.mean(0)
  np.testing.assert_allclose(metrics.merge_views(views, "logits"),
                             np.exp(mean) / np.exp(mean).sum(), rtol=1e-12)
  assert soft.argmax() == 1 and metrics.merge_views(views, "logits").argmax() == 0
  for merge, want in (("softmax", 1), ("logits", 0)):
    acc = metrics.EvalAccumulator(3, merge)
    acc.add(views, np.full(3, 1), np.zeros(3, np.int64), np.ones(3, bool))
    assert acc.result()["top1"] == float(want == 1)


@pytest.mark.parametrize("classes", [3, 5, 6, 8])
def test_top5_only_with_more_than_five_classes(classes):
  acc = metrics.EvalAccumulator(classes)
  logits = np.arange(classes, dtype=np.float32)[None].repeat(classes, 0)  # predicts C-1
  acc.add(logits, np.arange(classes), np.arange(classes), np.ones(classes, bool))
  r = acc.result()
  assert r["top1"] == pytest.approx(1 / classes)
  if classes <= 5:
    assert "top5" not in r
  else:  # the five highest logits are the classes C-5 .. C-1
    assert r["top5"] == pytest.approx(5 / classes)
  assert ("top5" in metrics.EvalAccumulator(classes).result()) == (classes > 5)


NUM_FRAMES, CLASSES = 40, 3


class ColourReader:
  """Uniform frames whose red channel codes the class the fake model will predict
  (the label, or the next class for paths with 'wrong'); paths with 'bad' fail, and
  paths with 'late' decode only the first of two temporal clips."""

  def __init__(self, t_out, n):
    self.first_clip = transforms.clip_indices(NUM_FRAMES, t_out, n, clip=0,
                                              num_clips=2).tolist()

  def read(self, record, choose):
    idx = choose(NUM_FRAMES)
    if "bad" in record.path or ("late" in record.path and idx.tolist() != self.first_clip):
      raise DecodeError(f"{record.path}: undecodable")
    frames = np.zeros((len(idx), 24, 32, 3), np.uint8)
    frames[..., 0] = 40 * ((record.label + ("wrong" in record.path)) % CLASSES)
    return frames


def _fake_logits(state, batch):
  """The "model": one-hot of the class coded in the frames' red channel."""
  del state
  return jax.nn.one_hot(batch["frames"][:, 0, 0, 0, 0] // 40, CLASSES)


def _config(classes=CLASSES):
  cfg = config_lib.base_config()
  cfg.dataset = ml_collections.ConfigDict(data_config.dataset_defaults())
  cfg.dataset.max_bad_fraction = 0.5
  cfg.input = ml_collections.ConfigDict(data_config.input_defaults())
  cfg.input.update(num_workers=0, eval_batch_size=4, read_threads=1, eval_clips=2,
                   eval_crops=1)
  cfg.time.update(n=2, t_out=2, arrangement="spatial")
  cfg.image_size = 16
  cfg.dataset.num_classes = classes
  return cfg


def test_eval_leaves_out_undecodable_videos_and_lists_them(tmp_path, caplog):
  names = ["rec0", "rec1_bad", "rec2_wrong", "rec3_late", "rec4", "rec5"]
  records = [Record(p, i % CLASSES) for i, p in enumerate(names)]
  cfg = _config()
  ds, info = pipeline.build(cfg, "eval", splits=Splits(records, records, ["a", "b", "c"]),
                            reader=ColourReader(2, 2))
  mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:1])
  task = tasks.Classification(cfg, model=None, num_classes=CLASSES)
  caplog.set_level("WARNING")
  scalars, result = task.evaluate(jax.jit(_fake_logits), None, iter(ds), mesh)
  # 6 videos x 2 clips: rec1 lost both views (excluded), rec3 its second (partial).
  assert scalars == {"eval/top1": pytest.approx(4 / 5), "eval/num_videos": 5,
                     "eval/excluded": 1, "eval/partial": 1, "eval/failed_views": 3}
  assert "eval/top5" not in scalars and "eval/replaced" not in scalars
  assert info.monitor.metrics() == {"input/bad_files": 2, "input/failed_views": 3}
  warned = [r.getMessage() for r in caplog.records if "cannot decode" in r.getMessage()]
  assert len(warned) == 2 and all("left out of the evaluation" in w for w in warned)

  task.write_reports(result, 7, final=True, writer=None, workdir=str(tmp_path), info=info)
  with open(tmp_path / tasks.EVAL_RESULTS_FILE) as f:
    report = json.load(f)
  assert report["excluded"] == ["rec1_bad"] and report["partial"] == ["rec3_late"]
  assert report["num_videos"] == 5 and report["failed_views"] == 3
  assert report["step"] == 7 and report["top1"] == pytest.approx(0.8)
  assert "top5" not in report
  assert os.path.isfile(tmp_path / "eval_confusion.csv")
  # The next evaluation counts afresh (the monitor's counts grow; the report's do not).
  again, _ = task.evaluate(jax.jit(_fake_logits), None, iter(ds), mesh)
  assert again == scalars


def _split_eval(process_id: int, port: int, workdir: str) -> None:
  """One of two processes (4 CPU devices each) evaluating 8 videos, of which process 0
  reads rec1_bad and rec3_late, and process 1 rec6_bad (contiguous blocks of views)."""
  jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
  names = ["rec0", "rec1_bad", "rec2_wrong", "rec3_late", "rec4", "rec5", "rec6_bad",
           "rec7"]
  records = [Record(p, i % CLASSES) for i, p in enumerate(names)]
  cfg = _config()
  cfg.input.eval_batch_size = 8
  ds, info = pipeline.build(cfg, "eval", splits=Splits(records, records, ["a", "b", "c"]),
                            reader=ColourReader(2, 2))
  task = tasks.Classification(cfg, model=None, num_classes=CLASSES)
  scalars, result = task.evaluate(jax.jit(_fake_logits), None, iter(ds),
                                  sharding.make_mesh(cfg.mesh))
  print("SCALARS", json.dumps(scalars), flush=True)
  task.write_reports(result, 3, final=True, writer=None, workdir=workdir, info=info)


@pytest.mark.slow
def test_two_processes_report_every_excluded_video(tmp_path):
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
             XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=REPO)
  procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port), str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True) for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  want = {"eval/top1": 5 / 6, "eval/num_videos": 6, "eval/excluded": 2,
          "eval/partial": 1, "eval/failed_views": 5}
  for out in outs:  # every process has the global counts
    [line] = [l for l in out.splitlines() if l.startswith("SCALARS ")]
    assert json.loads(line[len("SCALARS "):]) == pytest.approx(want)
  with open(tmp_path / tasks.EVAL_RESULTS_FILE) as f:  # written by process 0
    report = json.load(f)
  assert report["excluded"] == ["rec1_bad", "rec6_bad"]
  assert report["partial"] == ["rec3_late"] and report["num_videos"] == 6


def test_pretraining_eval_counts_undecodable_videos():
  records = [Record(p, 0) for p in ("rec0", "rec1_bad", "rec2", "rec3_late", "rec4")]
  cfg = _config()
  ds, _ = pipeline.build(cfg, "eval", splits=Splits(records, records, ["a"]),
                         reader=ColourReader(2, 2))
  mesh = sharding.make_mesh(cfg.mesh, jax.devices()[:1])
  cfg.pretrain = ml_collections.ConfigDict(dict(recon_images=1))

  def eval_step(state, batch, rng):
    del state, rng
    frames = batch["frames"]
    return jnp.ones(frames.shape[0]), frames, frames, frames

  task = tasks.Pretraining(cfg, model=None, num_classes=0)
  scalars, _ = task.evaluate(eval_step, None, iter(ds), mesh)
  assert scalars == {"eval/loss": 1.0, "eval/num_videos": 4, "eval/excluded": 1,
                     "eval/partial": 1, "eval/failed_views": 3}


@pytest.mark.slow
def test_run_reports_excluded_videos_in_eval_results(tmp_path, moving):
  """The loop end to end: a two-step fine-tune whose eval split has an undecodable
  video logs eval/excluded and lists the file in eval_results.json."""
  from time_jax.train import loop  # pylint: disable=g-import-not-at-top

  class Reader(moving.MovingSquareReader):

    def read(self, record, choose):
      if record.path == "eval_3":
        raise DecodeError("eval_3: truncated")
      return super().read(record, choose)

  config = moving.tiny_config()
  config.train.num_steps = 2
  config.checkpoint.every_steps = 2
  config.dataset.max_bad_fraction = 0.2
  workdir = tmp_path / "run"
  out = loop.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1],
                                splits=moving.splits(num_eval=8), reader=Reader())
  assert out["eval/num_videos"] == 7 and out["eval/excluded"] == 1
  assert "eval/top5" not in out and "eval/replaced" not in out  # 2 classes
  with open(workdir / "eval_results.json") as f:
    report = json.load(f)
  assert report["excluded"] == ["eval_3"] and report["num_videos"] == 7
  assert "top5" not in report
  with open(workdir / "metrics.jsonl") as f:
    logged = [json.loads(line) for line in f if "eval/excluded" in line]
  assert logged[-1]["eval/excluded"] == 1 and logged[-1]["step"] == 2


if __name__ == "__main__":
  _split_eval(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
