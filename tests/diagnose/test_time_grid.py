"""time_grid: every cell's source frame against a loop-by-loop reading of Eq. 1-5."""

import csv

import numpy as np
import pytest

from time_jax.diagnose import __main__ as cli
from time_jax.diagnose import time_grid
from time_jax.time_layer import frame_indices

from diagnose_helpers import non_empty_png  # pylint: disable=g-bad-import-order


@pytest.mark.parametrize("n,t_out", [(1, 4), (2, 3), (3, 2)])
def test_cell_sources_follow_the_paper(n, t_out):
  idx = frame_indices(50, t_out, n)
  spatial = time_grid.cell_sources(50, n, t_out, "spatial")
  temporal = time_grid.cell_sources(50, n, t_out, "temporal")
  for t in range(t_out):
    for r in range(n):
      for c in range(n):
        i = r * n + c  # row-major cell
        assert spatial[t, r, c] == idx[i * t_out + t]   # block i = frames i·T* .. , Eq. 1-2
        assert temporal[t, r, c] == idx[t * n * n + i]  # block t laid out row-major, Eq. 3-5


def test_cli_writes_rows_for_each_n_and_arrangement(video, tmp_path):
  rc = cli.main(["time_grid", "--video", video, "--n", "1,2,4", "--t-out", "2",
                 "--size", "64", "--out", str(tmp_path)])
  assert rc == 0
  non_empty_png(tmp_path / "time_grid.png")
  with open(tmp_path / "time_grid.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * 2 * (1 + 4 + 16)
  assert {(r["n"], r["arrangement"]) for r in rows} == {
      (str(n), a) for n in (1, 2, 4) for a in ("spatial", "temporal")}


def test_missing_video_is_one_clear_error(tmp_path, capsys):
  assert cli.main(["time_grid", "--video", str(tmp_path / "none.mp4"), "--out",
                   str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "none.mp4" in err and err.count("\n") == 1


def test_checkpoint_gives_the_runs_settings_and_the_models_input(video, tmp_path,
                                                                monkeypatch):
  """With --checkpoint the grid is the run's N, T*, arrangement and size, and its cells
  are the model's input (`inputs.model_input`, de-normalised)."""
  from time_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from time_jax.diagnose import inputs  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config.time.update(n=3, t_out=2, arrangement="temporal")
  config.image_size = 48
  config.input.eval_crop_fraction = 1.0
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text(config.to_json_best_effort())
  drawn = []
  monkeypatch.setattr(time_grid.plots, "image_grid",
                      lambda rows, path, **kw: drawn.append(rows))
  out = tmp_path / "out"
  assert cli.main(["time_grid", "--video", video, "--checkpoint", str(run),
                   "--out", str(out)]) == 0
  with open(out / "time_grid.csv") as f:
    rows = list(csv.DictReader(f))
  assert {(r["n"], r["arrangement"]) for r in rows} == {("3", "temporal")}
  assert len(rows) == 2 * 9
  [frames] = drawn[0]  # one row (N=3), one arrangement
  seen = inputs.to_uint8(inputs.model_input(inputs.read_views(video, config), config),
                         config)[0]
  assert len(frames) == 2 and frames[0].shape == seen[0].shape == (48, 48, 3)
  np.testing.assert_allclose(np.stack(frames).astype(int), seen.astype(int), atol=1)
  # Explicit flags override the run's settings.
  assert cli.main(["time_grid", "--video", video, "--checkpoint", str(run), "--n", "1,2",
                   "--arrangement", "both", "--t-out", "3", "--out", str(out)]) == 0
  with open(out / "time_grid.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 * 2 * (1 + 4)
  assert len(drawn[1][0]) == 2 * 3


def test_checkpoint_without_config_is_one_clear_error(video, tmp_path, capsys):
  assert cli.main(["time_grid", "--video", video, "--checkpoint", str(tmp_path),
                   "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "config.json" in err and err.count("\n") == 1


def test_a_long_video_name_stays_inside_the_title_and_help_keeps_its_lines(
    video, tmp_path, monkeypatch, capsys):
  import shutil  # pylint: disable=g-import-not-at-top
  import matplotlib.figure  # pylint: disable=g-import-not-at-top
  import matplotlib.text  # pylint: disable=g-import-not-at-top
  name = "a_clip_from_real_footage_with_a_name_that_has_no_space_at_all_0001.mp4"
  long_name = shutil.copy(video, tmp_path / name)
  inside = []

  def check(fig, path, **kwargs):
    del path, kwargs
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (title,) = [t for t in fig.findobj(matplotlib.text.Text) if name in t.get_text()]
    box, page = title.get_window_extent(renderer), fig.bbox
    inside.append(page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1)

  monkeypatch.setattr(matplotlib.figure.Figure, "savefig", check)
  assert cli.main(["time_grid", "--video", str(long_name), "--n", "1", "--t-out", "1",
                   "--arrangement", "spatial", "--out", str(tmp_path / "o")]) == 0
  assert inside == [True]
  capsys.readouterr()
  # A docstring's continued command keeps its line break in --help (no run of spaces).
  for tool in ("features", "reconstruct"):
    with pytest.raises(SystemExit):
      cli.main([tool, "--help"])
    assert "--video FILE \\\n      --" in capsys.readouterr().out
