#!/usr/bin/env bash
# The GPU benchmark run, on the lent device machine (after bench/device/prepare.sh here):
# SAM 2 / SAM 3 speed (bench_sam.py) and the torch labeling path (bench_labeling_torch.py, and
# its GPU equality test). Results go to $OUT; copy them into bench/RESULTS.md afterwards.
# Sized to end in about 8 minutes; each step has its own time limit so one overrun cannot
# take the others' results with it.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD/src"
if [ ! -e ../shared/data ]; then  # never write into an existing data folder
  mkdir -p ../shared && ln -s "$PWD/.devdata" ../shared/data
fi
{
  nvidia-smi -L
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/env.txt"

# BENCH_SAM_ARGS: for a dry run of this script without a GPU, e.g. "--tiny --no-append"
timeout 330 python3 bench/bench_sam.py ${BENCH_SAM_ARGS:---budget-s 270 --no-append} 2>&1 | tee "$OUT/bench_sam.log"
timeout 60 python3 -m pytest -q -p no:cacheprovider test/geometry/test_torch_labeling.py 2>&1 | tee "$OUT/test_torch_labeling.log"
timeout 90 python3 bench/bench_labeling_torch.py ${BENCH_LABELING_ARGS:---repeats 20 --large-repeats 10 --threads 16} 2>&1 \
  | tee "$OUT/bench_labeling_torch.log"
ls -la "$OUT"
