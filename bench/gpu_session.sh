#!/usr/bin/env bash
# One GPU session's checks and measurements, each step time-boxed so a slow or failing step
# cannot eat the others' time.  Logs (and each side-by-side row's JSON) go to $OUT or out/gpu.
#
#   bash bench/gpu_session.sh [PLAN|STEP ...]    default plan: issue17
#     issue17 = env build ops-tests sbs-train sbs-project sbs-animegan sbs-fid sbs-stargan2 sbs-finetune summary
#               (issue 17: every row side by side with the reference code, same GPU, same run;
#                most important first; step timeouts sum to 540 s = BUDGET_S)
#     all     = env build ops-tests tests ops generator train sidebyside finetune project translate metrics stargan2
#   DRY_RUN=1 bash bench/gpu_session.sh          print the plan (step, timeout, command) only
#   TINY=1 bash bench/gpu_session.sh issue17     the same python commands on the CPU at tiny sizes (--device
#                                                cpu --tiny; env/build/ops-tests skipped): the CPU check
#   BUDGET_S=540                                  wall-clock budget of the whole call: a step's timeout is cut
#                                                to what is left, a step with < 10 s left is skipped
#
# Before the device call, on the CPU machine: `bash bench/prepare_gpu_carry.sh` (copies the reference
# files the side-by-side scripts read into ./ref/ and the lpips / torch-fidelity wheels into ./.whl/,
# both git-ignored; prints the size, ~330 KiB). The lead's device call (its header has it too):
#   run(command="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
#                --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
#                BUDGET_S=540 bash bench/gpu_session.sh issue17",
#       carry=["ref", ".whl"], timeout_s=600)
# A rerun of what did not finish: the same call with the missing step names instead of "issue17".
set -u
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
REF_SG2=${REF_SG2:-ref/stylegan2-pytorch}
REF_AG2=${REF_AG2:-ref/animegan2-pytorch}
REF_SGV2=${REF_SGV2:-ref/stargan-v2}
BUDGET_S=${BUDGET_S:-540}
if [ -n "${TINY:-}" ]; then DEV="--device cpu"; T="--tiny"; else DEV="--device cuda"; T=""; fi
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(issue17)
expanded=()
for s in "${steps[@]}"; do
  case $s in
    issue17) expanded+=(env build ops-tests sbs-train sbs-project sbs-animegan sbs-fid sbs-stargan2 sbs-finetune summary) ;;
    all) expanded+=(env build ops-tests tests ops generator train sidebyside finetune project translate metrics stargan2) ;;
    *) expanded+=("$s") ;;
  esac
done
T0=$SECONDS

step() {  # step NAME SECONDS CMD...: run, tee to $OUT/NAME.log, say how long it took
  local name=$1 limit=$2; shift 2
  if [ -n "${DRY_RUN:-}" ]; then echo "$name (${limit} s): $*"; return; fi
  local left=$((BUDGET_S - (SECONDS - T0)))
  if [ -z "${TINY:-}" ] && [ "$left" -lt "$limit" ]; then
    limit=$left
    [ "$limit" -lt 10 ] && { echo "=== $name: skipped, ${left} s of the ${BUDGET_S} s budget left"; return; }
  fi
  [ -n "${TINY:-}" ] && limit=$((limit * 20))  # tiny CPU runs on a loaded 2-core box
  echo "=== $name ($(date +%T), timeout ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n "${TAIL:-25}" "$OUT/$name.log"
  echo "=== $name: rc=$rc, $((SECONDS - t0)) s"
}

tinyskip() { [ -n "${TINY:-}" ] && { echo "=== $1: skipped with TINY=1 (GPU only)"; return 0; }; return 1; }

for s in "${expanded[@]}"; do
  case $s in
    env) tinyskip env || step env 10 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c 'import torch, lpips, torch_fidelity; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), lpips.__file__, torch_fidelity.__version__)'" ;;
    # compile ours and rosinality's CUDA extensions at the same time (both lazy builds, cached on disk
    # for the later steps); only for this GPU's architecture
    build) tinyskip build || step build 100 env TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS=8 bash -c "$PY -c \"import torch, ops; x = torch.randn(2, 4, 8, 8, device='cuda'); ops.upfirdn2d(x, [1, 3, 3, 1], up=2, impl='cuda'); ops.bias_act(x, torch.zeros(4, device='cuda'), act='lrelu', impl='cuda'); print(ops.cuda_status())\" & a=\$!; $PY -c \"import sys; sys.path.insert(0, '$REF_SG2'); import op; print('rosinality op built')\" & b=\$!; wait \$a; ra=\$?; wait \$b; rb=\$?; exit \$((ra + rb))" ;;
    ops-tests) tinyskip ops-tests || step ops_tests 60 $PY -m pytest tests/test_ops_cuda.py -q -p no:cacheprovider --maxfail=30 -rf ;;
    # issue 17 rows: toonlab next to the reference code, same weights, same inputs, one process each
    sbs-train) step sbs_train 110 $PY bench/train_sidebyside.py $DEV $T --ref "$REF_SG2" --batch 32 --iters 16 --warmup 16 --precisions bf16,fp32 --ada-row --profile --json "$OUT/sbs_train.json" ;;
    sbs-project) step sbs_project 60 $PY bench/project_sidebyside.py $DEV $T --ref "$REF_SG2" --steps 150 --warmup 5 --batches 1,8 --precisions fp32,bf16 --json "$OUT/sbs_project.json" ;;
    sbs-animegan) step sbs_animegan 35 $PY bench/cpu_sidebyside.py $DEV --rows d --animegan-ref "$REF_AG2" --animegan-size $([ -n "${TINY:-}" ] && echo 32 || echo 512) --animegan-variants fp32,fp16,bf16 --repeats $([ -n "${TINY:-}" ] && echo 2 || echo 30) --json "$OUT/sbs_animegan.json" ;;
    sbs-fid) step sbs_fid 75 $PY bench/fid_sidebyside.py $DEV $T --n 10000 --n-ref 2048 --batch 100 --workers 4 --json "$OUT/sbs_fid.json" ;;
    sbs-stargan2) step sbs_stargan2 40 $PY bench/stargan2_sidebyside.py $DEV $T --ref "$REF_SGV2" --size 256 --batch 8 --iters 5 --warmup 2 --precisions fp32,bf16 --json "$OUT/sbs_stargan2.json" ;;
    sbs-finetune) step sbs_finetune 45 $PY bench/finetune.py $T --size 256 --batch 32 --warmup 4 --iters 16 --rows issue17 --precision bf16 --json "$OUT/sbs_finetune.json" ;;
    summary) step summary 5 $PY bench/issue17_summary.py "$OUT" ;;
    # the earlier single-side steps (plan "all")
    tests) step tests 300 $PY -m pytest tests -q -p no:cacheprovider -x --deselect tests/test_ops_cuda.py -m "not slow" ;;
    ops) step bench_ops 200 $PY bench/ops.py ;;
    generator) step bench_generator 180 $PY bench/generator.py --size 256 --batch 32 ;;
    train) step bench_train 300 $PY bench/train.py --size 256 --batch 32 --profile ;;
    sidebyside) step bench_sidebyside 420 $PY bench/cpu_sidebyside.py --device cuda --ref "$REF_SG2" --animegan-ref "$REF_AG2" --size 256 --batch 8 --channel-max 512 --repeats 10 --train-repeats 5 --shapes 32x512x32,32x128x128 ;;
    finetune) step bench_finetune 180 $PY bench/finetune.py ;;
    project) step bench_project 300 $PY bench/project.py --steps 500 ;;
    metrics) step bench_metrics 300 $PY bench/metrics.py ;;
    stargan2) step bench_stargan2 300 $PY bench/stargan2.py ;;
    translate) step bench_translate 300 $PY bench/translate.py --variants --no-cpu ;;
    *) echo "unknown step $s" ;;
  esac
done
[ -z "${DRY_RUN:-}" ] && echo "=== done: $((SECONDS - T0)) s of the ${BUDGET_S} s budget"
true
