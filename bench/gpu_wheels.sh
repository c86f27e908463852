#!/usr/bin/env bash
# Downloads into .whl/ the wheels that a bare GPU host lacks to run time_jax, so that
# its minutes go to measuring rather than installing.
#
#   bash bench/gpu_wheels.sh            # here, where PyPI answers; 39 MiB (PyAV 34)
#
# The host (the lent nvidia-h100-x1 / nvidia-h200 machines: Python 3.12, x86-64, no
# network) already has JAX 0.11 with CUDA, flax, optax, orbax-checkpoint, numpy,
# OpenCV, Pillow, absl-py, etils, cloudpickle, protobuf, PyYAML, packaging, wrapt,
# typing-extensions, matplotlib, tqdm and einops. It lacks the packages below; their
# own requirements are in that list except portpicker (grain's). The versions are the
# ones the test suite runs with here. tensorflow-datasets is left out: time_jax imports
# it only for dataset.source='tfds'.
#
# On the host, install them first in the same command (`.whl` carried, ~40 MiB with
# the working tree, under the 64 MiB a call may carry):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#       --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
#
# then, e.g. `PYTHONUNBUFFERED=1 python3 bench/gpu_report.py --out $OUT` (see
# bench/gpu_report.py for the whole `run` call).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WHEELS=(
  grain==0.2.18
  array-record==0.8.6
  portpicker==1.6.0
  av==18.1.0
  simplejpeg==1.9.0
  ml-collections==1.1.0
  clu==0.0.12
  tensorboardX==2.6.5
)

rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls .whl
du -sh .whl
