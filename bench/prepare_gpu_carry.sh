#!/usr/bin/env bash
# Put what the issue-17 GPU run needs beside the working tree, in git-ignored folders that travel
# with the device call (`carry`): the reference files the side-by-side scripts read (./ref/) and
# the two wheels the GPU image lacks (./.whl/: lpips for our projector, torch-fidelity for the FID
# comparison and our Inception; both pure Python). Prints the sizes (the carry limit is 64 MiB).
#
#   bash bench/prepare_gpu_carry.sh            # from the repository root, on the CPU machine
#   SG2=... AG2=... SGV2=... bash bench/prepare_gpu_carry.sh   # other reference checkouts
#   NO_WHEELS=1 bash bench/prepare_gpu_carry.sh                # refs only (wheels already in .whl/)
#
# Only the files the scripts import are copied (never the whole checkouts, never into git):
#   rosinality/stylegan2-pytorch: model.py, op/ (fused ops; compiled on the GPU like their own runs),
#     train.py (train_sidebyside.py: loss helpers), projector.py + lpips/{__init__,networks_basic,
#     pretrained_networks}.py (project_sidebyside.py; the LPIPS linear weights come from our side)
#   bryandlee/animegan2-pytorch: model.py (cpu_sidebyside.py row d)
#   clovaai/stargan-v2: core/{model,solver,utils}.py (stargan2_sidebyside.py)
#
# The lead's device call afterwards (one call, ≤ 9 min of wall time inside a 600 s limit):
#   run(command="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
#                --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
#                BUDGET_S=540 bash bench/gpu_session.sh issue17",
#       carry=["ref", ".whl"], timeout_s=600)
# Everything is written under $OUT (logs, one JSON per row, the profile tables, summary.md).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
SG2=${SG2:-/work/ref/stylegan2-pytorch}
AG2=${AG2:-/work/ref/animegan2-pytorch}
SGV2=${SGV2:-/work/ref/stargan-v2}
for d in "$SG2" "$AG2" "$SGV2"; do [ -d "$d" ] || { echo "error: no reference checkout at $d" >&2; exit 2; }; done
git check-ignore -q ref/ || { echo "error: ref/ is not git-ignored here (it must never be committed)" >&2; exit 2; }

rm -rf ref
mkdir -p ref/stylegan2-pytorch/lpips ref/animegan2-pytorch ref/stargan-v2/core
cp -r "$SG2"/{model.py,op,train.py,projector.py} ref/stylegan2-pytorch/
cp "$SG2"/lpips/{__init__.py,networks_basic.py,pretrained_networks.py} ref/stylegan2-pytorch/lpips/
rm -rf ref/stylegan2-pytorch/op/__pycache__
cp "$AG2"/model.py ref/animegan2-pytorch/
cp "$SGV2"/core/{model.py,solver.py,utils.py} ref/stargan-v2/core/

if [ -z "${NO_WHEELS:-}" ]; then
  git check-ignore -q .whl/ || echo /.whl/ >> .git/info/exclude
  mkdir -p .whl
  # the versions this repository is tested with; Python 3.12 is the GPU image's
  for pkg in lpips==0.1.4 torch-fidelity==0.4.0; do
    name=${pkg%%==*}
    ls .whl/"${name//-/_}"-*.whl > /dev/null 2>&1 && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg"
  done
fi
echo "files in ref/:"
find ref -type f | sort | sed 's/^/  /'
du -sh ref $( [ -d .whl ] && echo .whl ) | sed 's/^/size: /'
total=$(du -sk ref $( [ -d .whl ] && echo .whl ) | awk '{s += $1} END {print s}')
echo "carry total: ${total} KiB (limit 65536 KiB, with the tracked tree)"
