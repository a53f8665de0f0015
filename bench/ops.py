"""Benchmark toonlab's fused ops: CUDA kernels vs the PyTorch reference.

    python bench/ops.py                 # fp32, batch 32, StyleGAN2 shapes
    python bench/ops.py --dtype fp16 --batch 16

Prints markdown tables:
* upfirdn2d (upsample2d pad (2,1), downsample2d, blur pad (1,1)) at 512x32^2, 256x128^2 and
  128x256^2: forward and forward+backward time of impl='ref' and impl='cuda' and the speed-up;
* bias + lrelu: achieved GB/s of the forward and grad kernels next to a device-to-device copy
  (`y.copy_(x)`) of the same tensor measured in the same run, and their ratio.

Timing: torch.cuda.Event around `iters` back-to-back calls after `warmup` calls, repeated
`repeats` times; the median is reported.  Without CUDA the script says so and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import argparse  # noqa: E402
import importlib  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

import ops  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SHAPES = [(512, 32), (256, 128), (128, 256)]  # (channels, resolution)


def cuda_time_ms(fn: Callable[[], object], warmup: int, iters: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / iters)
    return statistics.median(times)


def _ops() -> dict[str, Callable[[torch.Tensor, str], torch.Tensor]]:
    return {
        "upsample2d (up 2, pad (2,1))": lambda x, impl: ops.upsample2d(x, impl=impl),
        "downsample2d (down 2, pad (1,1))": lambda x, impl: ops.downsample2d(x, impl=impl),
        "blur (pad (1,1))": lambda x, impl: ops.blur2d(x, [1, 3, 3, 1], pad=(1, 1), impl=impl),
    }


def bench_upfirdn2d(batch: int, dtype: torch.dtype, warmup: int, iters: int, repeats: int) -> None:
    print("\n## upfirdn2d\n")
    print("| op | input (N x C x H x W) | pass | ref ms | cuda ms | speed-up | max abs err |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, op in _ops().items():
        for ch, res in SHAPES:
            x = torch.randn(batch, ch, res, res, device="cuda", dtype=dtype)
            y_ref = op(x, "ref")
            y_cuda = op(x, "cuda")
            err = float((y_ref.float() - y_cuda.float()).abs().max())
            dy = torch.randn_like(y_cuda)
            del y_ref, y_cuda
            xg = x.detach().requires_grad_(True)
            row = {}
            for impl in ("ref", "cuda"):
                row[("fwd", impl)] = cuda_time_ms(lambda: op(x, impl), warmup, iters, repeats)

                def fwd_bwd(impl=impl):
                    y = op(xg, impl)
                    return torch.autograd.grad(y, xg, dy)

                row[("fwd+bwd", impl)] = cuda_time_ms(fwd_bwd, warmup, iters, repeats)
            shape = f"{batch}x{ch}x{res}x{res}"
            for p in ("fwd", "fwd+bwd"):
                r, c = row[(p, "ref")], row[(p, "cuda")]
                print(f"| {name} | {shape} | {p} | {r:.3f} | {c:.3f} | {r / c:.2f}x | {err:.2e} |")
            del x, xg, dy
            torch.cuda.empty_cache()


def bench_bias_act(batch: int, dtype: torch.dtype, warmup: int, iters: int, repeats: int) -> None:
    print("\n## bias + lrelu (gain sqrt 2) vs device copy\n")
    print("| tensor | layout | kernel | ms | GB/s | copy GB/s | ratio | ref ms |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    esize = torch.empty((), dtype=dtype).element_size()
    for ch, res in SHAPES:
        for layout in ("NCHW", "channels_last"):
            x = torch.randn(batch, ch, res, res, device="cuda", dtype=dtype)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            b = torch.randn(ch, device="cuda", dtype=dtype)
            y = torch.empty_like(x)
            n = x.numel()
            t_copy = cuda_time_ms(lambda: y.copy_(x), warmup, iters, repeats)
            copy_gbs = 2 * n * esize / t_copy / 1e6
            t_fwd = cuda_time_ms(lambda: ops.bias_act(x, b, act="lrelu", impl="cuda"), warmup, iters, repeats)
            t_ref = cuda_time_ms(lambda: ops.bias_act(x, b, act="lrelu", impl="ref"), warmup, iters, repeats)
            fwd_gbs = 2 * n * esize / t_fwd / 1e6
            shape = f"{batch}x{ch}x{res}x{res}"
            print(f"| {shape} | {layout} | forward (1R+1W) | {t_fwd:.3f} | {fwd_gbs:.0f} | {copy_gbs:.0f} | "
                  f"{fwd_gbs / copy_gbs:.0%} | {t_ref:.3f} |")
            # grad kernel: reads dy and y, writes dx (3 passes); compare per byte with the copy
            yb = ops.bias_act(x, b, act="lrelu", impl="cuda")
            dy = torch.randn_like(yb)
            ext = importlib.import_module("ops.bias_act")._plugin()  # the raw grad kernel
            t_grad = cuda_time_ms(lambda: ext.bias_act_grad(dy, yb, 2, 0.2, 2**0.5, -1.0), warmup, iters, repeats)
            grad_gbs = 3 * n * esize / t_grad / 1e6
            print(f"| {shape} | {layout} | grad (2R+1W) | {t_grad:.3f} | {grad_gbs:.0f} | {copy_gbs:.0f} | "
                  f"{grad_gbs / copy_gbs:.0%} | |")
            del x, y, yb, dy
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark toonlab's fused ops (CUDA vs reference).")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=["upfirdn2d", "bias_act"], default=None)
    args = ap.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench/ops.py: no CUDA device available; the CUDA kernels cannot be benchmarked here.")
        return 0

    dtype = DTYPES[args.dtype]
    print("# toonlab ops benchmark\n")
    print(f"- device: {torch.cuda.get_device_name()} (sm_{''.join(map(str, torch.cuda.get_device_capability()))})")
    print(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, dtype {args.dtype}, batch {args.batch}")
    t0 = time.time()
    x = torch.randn(1, 2, 8, 8, device="cuda")
    ops.upsample2d(x, impl="cuda")
    ops.bias_act(x, act="lrelu", impl="cuda")
    torch.cuda.synchronize()
    st = ops.cuda_status()
    print(f"- extensions ready in {time.time() - t0:.1f} s: "
          + ", ".join(f"{k}: {v['state']}" for k, v in st.items()))
    print(f"- timing: median of {args.repeats} x {args.iters} calls after {args.warmup} warm-up calls")
    if args.only in (None, "upfirdn2d"):
        bench_upfirdn2d(args.batch, dtype, args.warmup, args.iters, args.repeats)
    if args.only in (None, "bias_act"):
        bench_bias_act(args.batch, dtype, args.warmup, args.iters, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
