"""time_grid: every cell's source frame against a loop-by-loop reading of Eq. 1-5."""

import csv

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
