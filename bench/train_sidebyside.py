"""StyleGAN2 training side by side: rosinality's ``train.py`` loop vs ``StyleGAN2Trainer.train_step``.

    python bench/train_sidebyside.py --device cuda --ref ref/stylegan2-pytorch --profile     # issue 17 row
    python bench/train_sidebyside.py --tiny                                                 # CPU smoke

The full iteration at 256 px config-f, batch 32, on both sides: D main, lazy R1 (every 16, γ 10),
G main, lazy path length (every 4, batch ÷2, weight 2), EMA; style mixing 0.9; ADA off on both
(like for like); an ADA-on row of ours is added (``--ada-row``). Timed windows are a multiple of
16 iterations starting at iteration 0 of the lazy schedules, so both sides run the same number of
R1 and path-length steps.

Reference side, loaded from the rosinality checkout *at run time* (never copied): its ``model.py``
(via ``cpu_sidebyside.load_rosinality``; on CUDA its ``op`` compiles its fused CUDA ops as in
their own runs) and the loss/helper functions of its ``train.py`` (``d_logistic_loss``,
``d_r1_loss``, ``g_nonsaturating_loss``, ``g_path_regularize``, ``mixing_noise``, ``accumulate``,
``requires_grad`` — parsed out of the file: its top level imports its dataset and distributed
modules). The loop body of ``train()`` is re-stated below, including the ``.item()`` reads of its
progress bar each iteration, with the optimizers as its ``__main__`` builds them (lazy-reg lr and
beta scaling). Both sides start from the same weights (rosinality's state dicts load into ours
with ``strict=True``; outputs compared before timing) and get the same real batch.

Peak memory: each side runs alone on the device (the other's networks deleted first). TF32 is on
for both (toonlab's default; rosinality leaves torch's defaults: TF32 for cuDNN convs, not matmuls).
``--profile``: the top CUDA kernels (by self CUDA time) of one 16-iteration window per side.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import ast  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import autograd, nn, optim  # noqa: E402

import cpu_sidebyside as sbs  # noqa: E402
from stylegan2.training import StyleGAN2Trainer, TrainConfig  # noqa: E402
from toonlab.atomic import write_json_atomic, write_text_atomic  # noqa: E402

HELPERS = ("requires_grad", "accumulate", "d_logistic_loss", "d_r1_loss", "g_nonsaturating_loss",
           "g_path_regularize", "make_noise", "mixing_noise")


def load_train_helpers(ref: Path) -> types.SimpleNamespace:
    path = ref / "train.py"
    if not path.is_file():
        sys.exit(f"error: {ref} has no train.py (rosinality/stylegan2-pytorch)")
    tree = ast.parse(path.read_text(), str(path))
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in HELPERS]
    ns: dict = {"torch": torch, "math": math, "random": random, "autograd": autograd, "F": F, "nn": nn,
                "conv2d_gradfix": sys.modules["op"].conv2d_gradfix}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), str(path), "exec"), ns)  # noqa: S102 - a local checkout
    missing = [k for k in HELPERS if k not in ns]
    if missing:
        sys.exit(f"error: {path} lacks {', '.join(missing)}")
    return types.SimpleNamespace(**{k: ns[k] for k in HELPERS})


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_reset(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else math.nan


def profile_table(step: Callable[[], None], n: int, dev: torch.device, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CUDA] if dev.type == "cuda" else [ProfilerActivity.CPU]
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        _sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=top)


class Rosinality:
    """rosinality's train() state and loop body (augment off), one call = one iteration."""

    def __init__(self, h: types.SimpleNamespace, G: nn.Module, D: nn.Module, G_ema: nn.Module, real: torch.Tensor,
                 batch: int) -> None:
        self.h, self.G, self.D, self.G_ema, self.real, self.batch = h, G, D, G_ema, real, batch
        self.args = types.SimpleNamespace(latent=512, mixing=0.9, d_reg_every=16, g_reg_every=4, r1=10.0,
                                          path_regularize=2.0, path_batch_shrink=2, lr=0.002)
        a = self.args
        g_ratio, d_ratio = a.g_reg_every / (a.g_reg_every + 1), a.d_reg_every / (a.d_reg_every + 1)
        self.g_optim = optim.Adam(G.parameters(), lr=a.lr * g_ratio, betas=(0 ** g_ratio, 0.99 ** g_ratio))
        self.d_optim = optim.Adam(D.parameters(), lr=a.lr * d_ratio, betas=(0 ** d_ratio, 0.99 ** d_ratio))
        self.accum = 0.5 ** (32 / (10 * 1000))
        self.mean_path_length = 0
        self.i = 0
        dev = real.device
        self.r1_loss = torch.tensor(0.0, device=dev)
        self.path_loss = torch.tensor(0.0, device=dev)
        self.path_lengths = torch.tensor(0.0, device=dev)

    def __call__(self) -> None:
        h, a, G, D, i, device = self.h, self.args, self.G, self.D, self.i, self.real.device
        real_img = self.real.clone()  # their loader yields a fresh tensor (R1 sets requires_grad on it)
        h.requires_grad(G, False)
        h.requires_grad(D, True)
        noise = h.mixing_noise(self.batch, a.latent, a.mixing, device)
        fake_img, _ = G(noise)
        fake_pred = D(fake_img)
        real_pred = D(real_img)
        d_loss = h.d_logistic_loss(real_pred, fake_pred)
        loss_dict = {"d": d_loss, "real_score": real_pred.mean(), "fake_score": fake_pred.mean()}
        D.zero_grad()
        d_loss.backward()
        self.d_optim.step()
        if i % a.d_reg_every == 0:
            real_img.requires_grad = True
            real_pred = D(real_img)
            self.r1_loss = h.d_r1_loss(real_pred, real_img)
            D.zero_grad()
            (a.r1 / 2 * self.r1_loss * a.d_reg_every + 0 * real_pred[0]).backward()
            self.d_optim.step()
        loss_dict["r1"] = self.r1_loss
        h.requires_grad(G, True)
        h.requires_grad(D, False)
        noise = h.mixing_noise(self.batch, a.latent, a.mixing, device)
        fake_img, _ = G(noise)
        fake_pred = D(fake_img)
        g_loss = h.g_nonsaturating_loss(fake_pred)
        loss_dict["g"] = g_loss
        G.zero_grad()
        g_loss.backward()
        self.g_optim.step()
        if i % a.g_reg_every == 0:
            path_batch_size = max(1, self.batch // a.path_batch_shrink)
            noise = h.mixing_noise(path_batch_size, a.latent, a.mixing, device)
            fake_img, latents = G(noise, return_latents=True)
            self.path_loss, self.mean_path_length, self.path_lengths = h.g_path_regularize(
                fake_img, latents, self.mean_path_length)
            G.zero_grad()
            weighted = a.path_regularize * a.g_reg_every * self.path_loss
            if a.path_batch_shrink:
                weighted += 0 * fake_img[0, 0, 0, 0]
            weighted.backward()
            self.g_optim.step()
            _ = self.mean_path_length.item()  # mean_path_length_avg = reduce_sum(...).item() / world
        loss_dict["path"] = self.path_loss
        loss_dict["path_length"] = self.path_lengths.mean()
        h.accumulate(self.G_ema, G, self.accum)
        # the progress bar's values, read every iteration (reduce_loss_dict is a no-op on one GPU)
        _ = [v.mean().item() for v in loss_dict.values()]
        self.i += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", type=Path, default=Path("/work/ref/stylegan2-pytorch"), help="rosinality checkout")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channel-max", type=int, default=512, help="512 = config-f; smaller only for --tiny")
    ap.add_argument("--iters", type=int, default=32, help="timed iterations per side (a multiple of 16)")
    ap.add_argument("--warmup", type=int, default=16, help="untimed iterations first (a multiple of 16)")
    ap.add_argument("--precisions", default="fp32,bf16", help="our side (rosinality: fp32 only)")
    ap.add_argument("--ada-row", action="store_true", help="also time ours with ADA on (tuning, starting at p = 0.2)")
    ap.add_argument("--profile", action="store_true", help="top CUDA kernels of 16 iterations, each side")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: 32 px, channel max 32, batch 2, 16 + 16 iters")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.tiny:
        args.size, args.channel_max, args.batch, args.iters, args.warmup = 32, 32, 2, 16, 16
        args.precisions = "fp32"
    if args.iters % 16 or args.warmup % 16:
        sys.exit("error: --iters and --warmup must be multiples of 16 (the lazy R1 period)")
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but no CUDA GPU is visible")
        from toonlab.runtime import enable_tf32

        enable_tf32()
    sbs.DEV = dev
    ref = args.ref.resolve()
    cm = None if args.channel_max >= 512 else args.channel_max
    ros = sbs.load_rosinality(ref, cm, build=dev.type == "cuda")
    h = load_train_helpers(ref)
    G_ref, D_ref, G, D = sbs._pair(ros, args.size, cm, seed=0)
    diff = sbs._agreement(G_ref, D_ref, G, D, args.size, min(args.batch, 4))
    states = {"g": {k: v.detach().cpu().clone() for k, v in G.state_dict().items()},
              "d": {k: v.detach().cpu().clone() for k, v in D.state_dict().items()}}
    del G, D
    G_ema = ros.Generator(args.size, 512, 8, channel_multiplier=2).to(dev).eval()
    G_ema.load_state_dict(G_ref.state_dict())
    h.accumulate(G_ema, G_ref, 0)
    real = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(3)).to(dev) * 2 - 1
    where = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"{where} | torch {torch.__version__} | StyleGAN2 {args.size} px, channel max {args.channel_max}, "
          f"batch {args.batch}, lazy R1/16 + path length/4, EMA, mixing 0.9, ADA off | same weights: max |Δ| "
          f"{diff:.1e}\nrosinality's ops: {sbs.ROS_OPS}", flush=True)

    rows: list[dict] = []
    profiles: dict[str, str] = {}
    step = Rosinality(h, G_ref, D_ref, G_ema, real, args.batch)
    for _ in range(args.warmup):
        step()
    _sync(dev)
    _peak_reset(dev)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    _sync(dev)
    s_ref = (time.perf_counter() - t0) / args.iters
    m_ref = _peak(dev)
    print(f"  rosinality fp32: {args.batch / s_ref:.1f} img/s, peak {m_ref:.2f} GiB", flush=True)
    if args.profile:
        profiles["rosinality fp32"] = profile_table(step, 16, dev, args.top)
    del step, G_ref, D_ref, G_ema
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    precs = args.precisions.split(",")
    variants = [(p, False) for p in precs] + ([(precs[0], True)] if args.ada_row else [])  # ADA: the first one
    for prec, ada in variants:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(out=tmp, size=args.size, batch=args.batch, precision=prec, snapshot_every=0,
                              sample_every=0, iters=10**9, log_every=10**9, channel_max=args.channel_max,
                              ada=ada, ada_p=0.2 if ada else 0.0)
            t = StyleGAN2Trainer(cfg, None, dev)
            t.G.load_state_dict(states["g"], strict=True)
            t.G_ema.load_state_dict(states["g"], strict=True)
            t.D.load_state_dict(states["d"], strict=True)

            def ours(t: StyleGAN2Trainer = t) -> None:
                t.train_step(real)
                t.step += 1

            for _ in range(args.warmup):
                ours()
            _sync(dev)
            _peak_reset(dev)
            t0 = time.perf_counter()
            for _ in range(args.iters):
                ours()
            _sync(dev)
            s = (time.perf_counter() - t0) / args.iters
            m = _peak(dev)
            name = f"toonlab {prec}{' ADA on (from p 0.2)' if ada else ''}"
            rows.append(dict(side=name, precision=prec, ada=ada, ref_img_s=args.batch / s_ref,
                             ours_img_s=args.batch / s, ratio=s_ref / s, ref_peak_gib=m_ref, ours_peak_gib=m,
                             mem_ratio=m / m_ref if m_ref == m_ref else math.nan))
            print(f"  {name}: {args.batch / s:.1f} img/s, peak {m:.2f} GiB, ratio {s_ref / s:.2f}x", flush=True)
            if args.profile and not ada and prec == precs[0]:  # the headline run only (device time)
                profiles[name] = profile_table(ours, 16, dev, args.top)
            del t, ours
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    print(f"\n| toonlab run | rosinality img/s | toonlab img/s | ratio (target >= 2.6) | peak GiB ref / ours "
          f"| memory ours/ref (target <= 0.5) |\n|---|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['side']} | {r['ref_img_s']:.1f} | {r['ours_img_s']:.1f} | {r['ratio']:.2f}× | "
              f"{r['ref_peak_gib']:.2f} / {r['ours_peak_gib']:.2f} | {r['mem_ratio']:.2f} |")
    for name, table in profiles.items():
        print(f"\n### top kernels, 16 iterations: {name}\n\n```\n{table}\n```")
    if args.json:
        write_json_atomic(args.json, dict(workload="train", size=args.size, batch=args.batch, agreement=diff, ref_ops=sbs.ROS_OPS,
                                          rows=rows, profiles=profiles))
        if profiles:
            write_text_atomic(args.json.with_suffix(".profile.md"),
                "".join(f"### {k}\n\n```\n{v}\n```\n\n" for k, v in profiles.items()))


if __name__ == "__main__":
    main()
