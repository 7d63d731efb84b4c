#!/usr/bin/env bash
# Prepare the one GPU benchmark run on a lent device machine (see bench/device/README.md):
# wheels the device image lacks (transformers as pinned here, and what it needs) in .whl/, and
# the recorded data the benchmarks read in .devdata/ (../shared does not travel). Run here, in
# the repository root, before the device `run` call. Both folders stay out of git.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY_VERSION="${DEVICE_PYTHON_VERSION:-3.12}"  # the device image's python3
for ignored in .whl/ .devdata/; do
  grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done

rm -rf .whl && mkdir -p .whl
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
grep -v -E '^(torch|torchvision)==' requirements/constraints.txt > "$constraints"
python3 -m pip download -q --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -c "$constraints" -d .whl "$(grep -E '^transformers==' requirements/base.txt)"
rm -f .whl/numpy-*.whl  # the device's numpy (with its torch) stays
echo "[prepare] wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1)"

SHARED="$ROOT/../shared/data"
rm -rf .devdata && mkdir -p .devdata/sam_demo/videos
cp -r "$SHARED/sam_demo/videos/bedroom" .devdata/sam_demo/videos/
cp -r "$SHARED/nuscenes_mini_sample" "$SHARED/kitti_object" .devdata/
echo "[prepare] data: $(du -sh .devdata | cut -f1)"
echo '[prepare] now: run(command="bash bench/device/run.sh", carry=[".whl", ".devdata"], timeout_s=560)'
