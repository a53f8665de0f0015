#!/usr/bin/env bash
# One GPU session's checks and measurements, each step time-boxed so a slow or failing step
# cannot eat the others' time.  Logs go to $OUT (the device tool's folder) or out/gpu.
#
#   bash bench/gpu_session.sh [STEP ...]     steps: env ops-tests tests ops generator train finetune project translate metrics stargan2
#                                            (default: all of them, in that order)
# project needs the lpips wheel and metrics the torch-fidelity wheel on the GPU machine (not in its
# image): carry .whl (pip download lpips torch-fidelity) and install them first (device README).
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env ops-tests tests ops generator train finetune project translate metrics stargan2)

step() {  # step NAME SECONDS CMD...: run, tee to $OUT/NAME.log, say how long it took
  local name=$1 limit=$2; shift 2
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
    ops-tests) step ops_tests 420 $PY -m pytest tests/test_ops_cuda.py -q -p no:cacheprovider --maxfail=30 -rf ;;
    tests) step tests 300 $PY -m pytest tests -q -p no:cacheprovider -x --deselect tests/test_ops_cuda.py -m "not slow" ;;
    ops) step bench_ops 200 $PY bench/ops.py ;;
    generator) step bench_generator 180 $PY bench/generator.py --size 256 --batch 32 ;;
    train) step bench_train 300 $PY bench/train.py --size 256 --batch 32 --profile ;;
    finetune) step bench_finetune 180 $PY bench/finetune.py ;;
    project) step bench_project 300 $PY bench/project.py --steps 500 ;;
    metrics) step bench_metrics 300 $PY bench/metrics.py ;;
    stargan2) step bench_stargan2 300 $PY bench/stargan2.py ;;
    translate) step bench_translate 300 $PY bench/translate.py --variants --no-cpu ;;
    *) echo "unknown step $s" ;;
  esac
done
