"""AnimeGANv2 translation speed: port-style eager baseline vs our fast path, and end-to-end 1080p video.

    python bench/translate.py [--frames 120] [--compile] [--variants] [--cpu-iters 2]

Generator: the v2 network (2.14 M parameters) with random weights — speed does not depend on the
values. Batch 1. "port" = what the widely used animegan2-pytorch port does: the plain module in
fp32, NCHW, eager, cudnn.benchmark off (its "fp16" row is the same under fp16 autocast). "ours" =
``translation.inference.Translator``: weights cast to fp16/bf16 (fp32 with TF32), channels-last,
cudnn.benchmark, pad to 32 and crop back included. Video: a synthetic 1080p mp4v clip through
``transform_video`` (decode thread → GPU → encode thread), wall-clock frames/s including decode,
encode and the final mux. On a machine without a GPU only the CPU rows run (512², port vs ours).

Port's numbers quoted in issue 6 (H100): 1,024 ms per 1080p frame, 103 ms per 512²; the
port-style rows here measured 52 ms and 7.5 ms on an H100 (torch 2.11, CUDA 13).
Targets: ≤ 25 ms per 1080p frame, ≥ 30 fps end-to-end 1080p video.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

from _common import cuda_time, header

import numpy as np
import torch

from translation.animegan import AnimeGANv2Generator
from translation.inference import Translator
from toonlab.video import count_frames, iter_batches, transform_video

SIZES = {"512²": (512, 512), "1080p": (1080, 1920)}


def _port_fn(G: torch.nn.Module, x: torch.Tensor, amp: bool):
    def run():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            return G(x)

    return run


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float() - b.float()).pow(2).mean().item() / 4  # [-1,1] → [0,1] scale
    return 10 * math.log10(1 / max(mse, 1e-12))


def synth_clip(path: Path, frames: int, size=(1920, 1080), fps: float = 30.0) -> Path:
    """A moving-shapes 1080p clip (mp4v) so decode/encode costs are those of real content."""
    import cv2

    w, h = size
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        f = np.roll(base, 8 * i, axis=1).copy()
        cv2.circle(f, (100 + 12 * i % (w - 200), h // 2), 120, (40, 200, 90), -1)
        vw.write(f)
    vw.release()
    return path


def _row(label: str, prec: str, r: dict) -> None:
    print(f"| {label} | {prec} | {r['512²'] * 1e3:.1f} | {r['1080p'] * 1e3:.1f} | {r['1080p mem']:.2f} |", flush=True)


def _label(cl: bool, fuse: bool = True, comp: bool = False) -> str:
    return f"ours ({'fused' if fuse else 'unfused'}, {'channels-last' if cl else 'NCHW'}{', compile' if comp else ''})"


def _time_ours(G, dev, prec: str, cl: bool, comp: bool, fuse: bool = True) -> tuple[dict, torch.Tensor]:
    tr = Translator(G, dev, prec, channels_last=cl, compile=comp, fuse=fuse)
    res, y512 = {}, None
    for name, (h, w) in SIZES.items():
        x = torch.rand(1, 3, h, w, device=dev, generator=torch.Generator(dev).manual_seed(1)) * 2 - 1
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = tr(x)
        torch.cuda.synchronize()
        res[name + " first"] = time.perf_counter() - t0
        res[name] = cuda_time(lambda: tr(x), warmup=3, iters=10)
        res[name + " mem"] = torch.cuda.max_memory_allocated() / 2**30
        if name == "512²":
            y512 = y.float().cpu()
    return res, y512


def _time_video(G, dev, src: Path, out: Path, prec: str, batch: int, comp: bool, n: int, cl=None) -> None:
    tr = Translator(G, dev, prec, compile=comp, channels_last=cl)
    warm = np.zeros((batch, 1080, 1920, 3), np.uint8)
    for _ in range(2):  # cudnn autotune / compilation outside the timed run
        tr.translate_uint8(warm)()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = transform_video(src, out, lambda f: tr.translate_uint8(f), batch=batch, show_progress=False)
    dt = time.perf_counter() - t0
    assert res.frames == n, (res.frames, n)
    print(f"| {_label(tr.channels_last, True, comp)} | {prec} | {batch} | {res.frames} | {dt:.2f} | "
          f"{res.frames / dt:.1f} |", flush=True)


def gpu(args) -> None:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    G = AnimeGANv2Generator().eval()
    table = "\n| path | precision | ms / 512² | ms / 1080p | peak GiB (1080p) |\n|---|---|---|---|---|"
    print(table, flush=True)

    # Port-style first, under PyTorch's default flags (cudnn.benchmark off), before ours sets any.
    port = copy.deepcopy(G).to(dev).eval()
    for prec, amp in (("fp32", False), ("fp16 autocast", True)):
        res = {}
        for name, (h, w) in SIZES.items():
            x = torch.rand(1, 3, h, w, device=dev) * 2 - 1
            torch.cuda.reset_peak_memory_stats()
            res[name] = cuda_time(_port_fn(port, x, amp), warmup=2, iters=args.iters)
            res[name + " mem"] = torch.cuda.max_memory_allocated() / 2**30
        _row("port (eager, NCHW)", prec, res)
    del port
    torch.cuda.empty_cache()

    cl0 = Translator.default_channels_last
    variants = [("fp32", cl0, True), ("fp16", cl0, True), ("bf16", cl0, True)]
    if args.variants:
        variants += [("fp16", not cl0, True), ("fp16", cl0, False), ("fp16", not cl0, False)]
    outputs = {}
    for prec, cl, fuse in variants:
        res, outputs[(prec, cl, fuse)] = _time_ours(G, dev, prec, cl, False, fuse)
        _row(_label(cl, fuse), prec, res)
        torch.cuda.empty_cache()
    ref = outputs[("fp32", cl0, True)]
    print("\nfast-path output vs ours fp32 at 512² (random weights):")
    for (p, cl, fuse), y in outputs.items():
        if (p, cl, fuse) != ("fp32", cl0, True):
            print(f"  {_label(cl, fuse)} {p}: max |Δ| {(y - ref).abs().max():.4f}, PSNR {_psnr(y, ref):.1f} dB")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        src = synth_clip(tmp / "clip1080.mp4", args.frames)
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = sum(len(b) for b in iter_batches(src, 8))
        t_dec = time.perf_counter() - t0
        print(f"\nvideo: synthetic 1920×1080 mp4v clip, {n} frames (written at {n / t_make:.0f} fps); "
              f"decode alone {n / t_dec:.0f} fps")
        print("\n| video path | precision | batch | frames | wall s | fps end-to-end |\n|---|---|---|---|---|---|",
              flush=True)
        runs = [("fp16", 1, None), ("fp16", 4, None), ("bf16", 4, None)]
        if args.variants:
            runs += [("fp16", 4, not cl0)]
        for prec, batch, cl in runs:
            _time_video(G, dev, src, tmp / "out.mp4", prec, batch, False, n, cl)
        assert count_frames(tmp / "out.mp4") == n

        if args.compile:  # last: compilation is slow and the least certain part
            print(table, flush=True)
            for prec in ("fp16", "bf16"):
                res, _ = _time_ours(G, dev, prec, cl0, True)
                _row(_label(cl0, True, True), prec, res)
                print(f"(first calls incl. compilation: {res['512² first']:.1f} s at 512², "
                      f"{res['1080p first']:.1f} s at 1080p)", flush=True)
            print("\n| video path | precision | batch | frames | wall s | fps end-to-end |\n|---|---|---|---|---|---|")
            _time_video(G, dev, src, tmp / "out.mp4", "fp16", 4, True, n)
    print(f"\npeak GPU memory overall: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def cpu(args) -> None:
    torch.manual_seed(0)
    G = AnimeGANv2Generator().eval()
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    print(f"\nCPU: {torch.get_num_threads()} threads, 512² image, batch 1, {args.cpu_iters} timed runs after 1 warm-up")
    print("\n| path | precision | ms / 512² |\n|---|---|---|")
    port = copy.deepcopy(G)

    def run_port():
        with torch.no_grad():
            port(x)

    t = cuda_time(run_port, warmup=1, iters=args.cpu_iters)
    print(f"| port (eager, NCHW) | fp32 | {t * 1e3:.0f} |")
    # bf16 on the CPU runs through autocast and is only fast with AMX/AVX512-BF16; --cpu-bf16 adds it.
    for prec, cl, fuse in [("fp32", True, True), ("fp32", False, True), ("fp32", False, False)] + (
            [("bf16", True, True)] if args.cpu_bf16 else []):
        tr = Translator(G, "cpu", prec, channels_last=cl, fuse=fuse)
        try:
            t = cuda_time(lambda: tr(x), warmup=1, iters=args.cpu_iters)
        except RuntimeError as e:  # e.g. bf16 kernels missing on an old CPU
            print(f"| {_label(cl, fuse)} | {prec} | failed: {str(e).splitlines()[0][:60]} |")
            continue
        print(f"| {_label(cl, fuse)} | {prec} | {t * 1e3:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120, help="frames in the synthetic 1080p clip")
    ap.add_argument("--iters", type=int, default=10, help="timed runs per GPU row")
    ap.add_argument("--cpu-iters", type=int, default=2, help="timed runs per CPU row")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile rows")
    ap.add_argument("--variants", action="store_true",
                    help="also time the other memory layout and the unfused module (fp16)")
    ap.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on the CPU")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU rows on a GPU machine")
    args = ap.parse_args()
    print(header())
    if torch.cuda.is_available():
        gpu(args)
    if not args.no_cpu:
        cpu(args)


if __name__ == "__main__":
    main()
