#!/usr/bin/env bash
# One GPU session's checks and measurements, each step time-boxed so a slow or failing step
# cannot eat the others' time.  Logs go to $OUT (the device tool's folder) or out/gpu.
#
#   bash bench/gpu_session.sh [STEP ...]     steps: env build ops-tests tests ops generator train sidebyside
#                                            finetune project translate metrics stargan2
#                                            (default: all of them, in that order)
#   DRY_RUN=1 bash bench/gpu_session.sh      print the commands only
# project needs the lpips wheel and metrics the torch-fidelity wheel on the GPU machine (not in its
# image): carry .whl (pip download lpips torch-fidelity) and install them first (device README).
# sidebyside (issue 17: the same workloads next to rosinality and the AnimeGANv2 port, same weights)
# imports the reference code from REF_SG2 / REF_AG2 (default ref/stylegan2-pytorch and
# ref/animegan2-pytorch under the checkout): the device machine reaches nothing outside the working
# tree, so copy the files the script imports (88 KB; the whole checkouts exceed the 64 MiB carry)
# to ./ref/ (ignored by git) and carry "ref" with the run:
#   mkdir -p ref/stylegan2-pytorch ref/animegan2-pytorch
#   cp -r /work/ref/stylegan2-pytorch/{model.py,op} ref/stylegan2-pytorch/
#   cp /work/ref/animegan2-pytorch/model.py ref/animegan2-pytorch/
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
REF_SG2=${REF_SG2:-ref/stylegan2-pytorch}
REF_AG2=${REF_AG2:-ref/animegan2-pytorch}
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env build ops-tests tests ops generator train sidebyside finetune project translate metrics stargan2)

step() {  # step NAME SECONDS CMD...: run, tee to $OUT/NAME.log, say how long it took
  local name=$1 limit=$2; shift 2
  if [ -n "${DRY_RUN:-}" ]; then echo "$name (${limit} s): $*"; return; fi
  echo "=== $name ($(date +%T))"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL:-25}" "$OUT/$name.log"
  echo "=== $name: rc=$rc, $((SECONDS - t0)) s"
}

for s in "${steps[@]}"; do
  case $s in
    env) step env 60 bash -c "nvidia-smi; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'" ;;
    # compile both extensions through the normal lazy path and say what was built
    build) step build 300 $PY -c "import torch, ops; x = torch.randn(2, 4, 8, 8, device='cuda'); ops.upfirdn2d(x, [1, 3, 3, 1], up=2, impl='cuda'); ops.bias_act(x, torch.zeros(4, device='cuda'), act='lrelu', impl='cuda'); print(ops.cuda_status())" ;;
    ops-tests) step ops_tests 420 $PY -m pytest tests/test_ops_cuda.py -q -p no:cacheprovider --maxfail=30 -rf ;;
    tests) step tests 300 $PY -m pytest tests -q -p no:cacheprovider -x --deselect tests/test_ops_cuda.py -m "not slow" ;;
    ops) step bench_ops 200 $PY bench/ops.py ;;
    generator) step bench_generator 180 $PY bench/generator.py --size 256 --batch 32 ;;
    train) step bench_train 300 $PY bench/train.py --size 256 --batch 32 --profile ;;
    # training step (R1), 256 px config-f batch 8, G inference, AnimeGANv2, the ops: toonlab vs rosinality / the port
    sidebyside) step bench_sidebyside 420 $PY bench/cpu_sidebyside.py --device cuda --ref "$REF_SG2" --animegan-ref "$REF_AG2" --size 256 --batch 8 --channel-max 512 --repeats 10 --train-repeats 5 --shapes 32x512x32,32x128x128 ;;
    finetune) step bench_finetune 180 $PY bench/finetune.py ;;
    project) step bench_project 300 $PY bench/project.py --steps 500 ;;
    metrics) step bench_metrics 300 $PY bench/metrics.py ;;
    stargan2) step bench_stargan2 300 $PY bench/stargan2.py ;;
    translate) step bench_translate 300 $PY bench/translate.py --variants --no-cpu ;;
    *) echo "unknown step $s" ;;
  esac
done
