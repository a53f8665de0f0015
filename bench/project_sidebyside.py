"""Projection side by side: rosinality's ``projector.py`` loop vs ``inversion.project.project``.

    python bench/project_sidebyside.py --device cuda --ref ref/stylegan2-pytorch          # issue 17 row
    python bench/project_sidebyside.py --tiny --steps 5                                   # CPU smoke

Both sides project the same random target with the same generator weights (rosinality's
``Generator`` from their ``model.py``; its state dict loads into ours with ``strict=True``) and the
same LPIPS-VGG (rosinality's own ``lpips/`` package — ``PNetLin`` with their v0.1 linear layers —
vs the ``lpips`` wheel toonlab uses; the trunk and linear weights are copied from ours into theirs
so both compute the same distance, checked before timing). The VGG trunk is RANDOM (fixed seed)
unless real weights are on disk: nothing downloads. A random trunk costs exactly what the ImageNet
one costs, so the timing is the same; the final LPIPS values are comparable only with each other.

Reference side: rosinality's helper functions (``noise_regularize``, ``noise_normalize_``,
``get_lr``, ``latent_noise``) are taken from their ``projector.py`` *at run time* (parsed out of
the file; its module top level imports ``lpips``/``model`` by bare name and opens files, so it is
not imported whole), and the loop body of its ``__main__`` is re-stated below line for line
(W+, noise maps optimised, ``percept(img_gen, imgs).sum()``, Adam, lr 0.1, 1000 steps). Their
``lpips`` package imports ``skimage``/``IPython``/``scipy`` at its top and calls torchvision's
removed ``pretrained=`` argument; those are shimmed *inside this script only*, while their two
network files load. ``--device cuda``: rosinality's ``op`` compiles its fused CUDA ops as in
their own runs.

Timing: the optimisation loop only, both sides (the 10k-sample W statistics before it excluded on
both), after a short warm-up run per side; synchronised at the end. Prints a markdown table and,
with ``--json``, writes the rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ (cpu_sidebyside, _common)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import ast  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn, optim  # noqa: E402

import cpu_sidebyside as sbs  # noqa: E402
import inversion.project as pj  # noqa: E402
from stylegan2.networks import Generator  # noqa: E402
from toonlab.atomic import write_json_atomic  # noqa: E402

# --------------------------------------------------------------------------------------------
# rosinality's projector helpers and LPIPS, loaded from their checkout
# --------------------------------------------------------------------------------------------


def load_projector_helpers(ref: Path) -> types.SimpleNamespace:
    """The top-level functions of rosinality's projector.py, executed from their source."""
    path = ref / "projector.py"
    if not path.is_file():
        sys.exit(f"error: {ref} has no projector.py (rosinality/stylegan2-pytorch)")
    tree = ast.parse(path.read_text(), str(path))
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    ns: dict = {"torch": torch, "math": math, "F": F}
    exec(compile(ast.Module(body=funcs, type_ignores=[]), str(path), "exec"), ns)  # noqa: S102 - a local checkout
    need = ("noise_regularize", "noise_normalize_", "get_lr", "latent_noise")
    missing = [k for k in need if k not in ns]
    if missing:
        sys.exit(f"error: {path} lacks {', '.join(missing)}")
    return types.SimpleNamespace(**{k: ns[k] for k in need})


@contextlib.contextmanager
def _shimmed_imports() -> Iterator[None]:
    """Stand-ins for what rosinality's lpips files import but the LPIPS forward never uses."""
    import torchvision.models as tvm

    tv = types.ModuleType("tv_shim")
    # torchvision dropped ``pretrained=``; a random trunk is what we want anyway (nothing downloads)
    tv.vgg16 = lambda pretrained=False, **k: tvm.vgg16(weights=None)
    stubs = {"IPython": types.ModuleType("IPython"), "skimage": types.ModuleType("skimage")}
    stubs["IPython"].embed = lambda *a, **k: None
    stubs["skimage"].color = types.ModuleType("skimage.color")
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        yield tv
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def load_rosinality_lpips(ref: Path) -> type:
    """rosinality's ``lpips.networks_basic.PNetLin``, its package's helpers taken from their files."""
    pkg = ref / "lpips"
    if not (pkg / "networks_basic.py").is_file():
        sys.exit(f"error: {ref} has no lpips/networks_basic.py")
    # lpips/__init__.py holds normalize_tensor (used by PNetLin.forward); take just that function
    init = ast.parse((pkg / "__init__.py").read_text())
    util_ns: dict = {"torch": torch}
    fn = [n for n in init.body if isinstance(n, ast.FunctionDef) and n.name == "normalize_tensor"]
    if not fn:
        sys.exit(f"error: {pkg / '__init__.py'} has no normalize_tensor")
    exec(compile(ast.Module(body=fn, type_ignores=[]), str(pkg / "__init__.py"), "exec"), util_ns)  # noqa: S102
    util = types.ModuleType("ros_lpips_util")
    util.normalize_tensor = util_ns["normalize_tensor"]
    with _shimmed_imports() as tv:
        pn = types.ModuleType("ros_lpips_pretrained_networks")
        src = (pkg / "pretrained_networks.py").read_text().replace(
            "from torchvision import models as tv", "tv = __tv__").replace("from IPython import embed", "")
        pn.__dict__["__tv__"] = tv
        exec(compile(src, str(pkg / "pretrained_networks.py"), "exec"), pn.__dict__)  # noqa: S102
        nb = types.ModuleType("ros_lpips_networks_basic")
        src = (pkg / "networks_basic.py").read_text()
        src = src.replace("from . import pretrained_networks as pn", "pn = __pn__").replace(
            "import lpips as util", "util = __util__")
        nb.__dict__.update(__pn__=pn, __util__=util)
        exec(compile(src, str(pkg / "networks_basic.py"), "exec"), nb.__dict__)  # noqa: S102
    return nb.PNetLin


# --------------------------------------------------------------------------------------------
# The two loops
# --------------------------------------------------------------------------------------------


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def rosinality_loop(h: types.SimpleNamespace, g_ema: nn.Module, percept: nn.Module, imgs: torch.Tensor,
                    steps: int, lr0: float = 0.1, noise: float = 0.05, noise_ramp: float = 0.75,
                    noise_reg: float = 1e5, mse: float = 0.0, n_mean_latent: int = 10000) -> tuple[float, float]:
    """projector.py's __main__ (W+), re-stated; (seconds of the loop, last perceptual loss / image)."""
    device = imgs.device
    with torch.no_grad():
        noise_sample = torch.randn(n_mean_latent, 512, device=device)
        latent_out = g_ema.style(noise_sample)
        latent_mean = latent_out.mean(0)
        latent_std = ((latent_out - latent_mean).pow(2).sum() / n_mean_latent) ** 0.5
    noises_single = g_ema.make_noise()
    noises = [n.repeat(imgs.shape[0], 1, 1, 1).normal_() for n in noises_single]
    latent_in = latent_mean.detach().clone().unsqueeze(0).repeat(imgs.shape[0], 1)
    latent_in = latent_in.unsqueeze(1).repeat(1, g_ema.n_latent, 1)  # --w_plus
    latent_in.requires_grad = True
    for n in noises:
        n.requires_grad = True
    optimizer = optim.Adam([latent_in] + noises, lr=lr0)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        t = i / steps
        lr = h.get_lr(t, lr0)
        optimizer.param_groups[0]["lr"] = lr
        noise_strength = latent_std * noise * max(0, 1 - t / noise_ramp) ** 2
        latent_n = h.latent_noise(latent_in, noise_strength.item())
        img_gen, _ = g_ema([latent_n], input_is_latent=True, noise=noises)
        batch, channel, height, width = img_gen.shape
        if height > 256:
            factor = height // 256
            img_gen = img_gen.reshape(batch, channel, height // factor, factor, width // factor, factor).mean([3, 5])
        p_loss = percept(imgs, img_gen).sum()  # PerceptualLoss.forward(pred, target) -> net(target, pred)
        n_loss = h.noise_regularize(noises)
        mse_loss = F.mse_loss(img_gen, imgs)
        loss = p_loss + noise_reg * n_loss + mse * mse_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        h.noise_normalize_(noises)
        # their tqdm description reads p_loss/n_loss/mse_loss with .item() every step (3 syncs)
        desc = (p_loss.item(), n_loss.item(), mse_loss.item())
    _sync(device)
    return time.perf_counter() - start, desc[0] / imgs.shape[0]


def ours_loop(G: Generator, lp: nn.Module, imgs: torch.Tensor, steps: int, precision: str) -> tuple[float, float]:
    res = pj.project(G, imgs, lp, pj.ProjectConfig(steps=steps, precision=precision, n_mean_latent=10000),
                     show_progress=False)
    return res.seconds, float(res.history[-1]["perceptual"])


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", type=Path, default=Path("/work/ref/stylegan2-pytorch"), help="rosinality checkout")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--channel-max", type=int, default=512, help="512 = config-f; smaller only for --tiny")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=10, help="steps of a warm-up run per side (cuDNN autotune)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--precisions", default="fp32", help="our side: fp32 and/or bf16 (rosinality: fp32 only)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: 32 px, channel max 32, 5 steps, batches 1,2")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.channel_max, args.steps, args.warmup, args.batches = 32, 32, min(args.steps, 5), 1, "1,2"
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but no CUDA GPU is visible")
        from toonlab.runtime import enable_tf32

        enable_tf32()  # both sides: rosinality's own runs leave TF32 at torch's default; we say so below
    sbs.DEV = dev
    ref = args.ref.resolve()
    cm = None if args.channel_max >= 512 else args.channel_max
    # the lpips wheel first: rosinality's checkout goes onto sys.path next, and its lpips/ would shadow it
    lp = pj.build_perceptual("random", None, dev)  # lpips.LPIPS, random VGG trunk (fixed seed), v0.1 lins
    ros = sbs.load_rosinality(ref, cm, build=dev.type == "cuda")
    helpers = load_projector_helpers(ref)
    PNetLin = load_rosinality_lpips(ref)

    torch.manual_seed(0)
    G_ref = ros.Generator(args.size, 512, 8, channel_multiplier=2).eval()
    G = Generator(args.size, 512, 8, channel_multiplier=2, channel_max=args.channel_max)
    G.load_state_dict(G_ref.state_dict(), strict=True)
    G_ref, G = G_ref.to(dev).requires_grad_(False), G.to(dev).eval()
    theirs = PNetLin(pnet_rand=True, pnet_tune=False, pnet_type="vgg", use_dropout=True, spatial=False,
                     version="0.1", lpips=True)
    ours_sd = lp.state_dict()
    theirs.load_state_dict({k: ours_sd[k] for k in theirs.state_dict()}, strict=True)
    theirs = theirs.to(dev).eval()
    if dev.type == "cuda":  # DistModel wraps the net in DataParallel on the GPU
        theirs = nn.DataParallel(theirs, device_ids=[dev.index or 0])

    g = torch.Generator().manual_seed(1)
    a = (torch.rand(2, 3, args.size, args.size, generator=g) * 2 - 1).to(dev)
    b = (torch.rand(2, 3, args.size, args.size, generator=g) * 2 - 1).to(dev)
    with torch.no_grad():
        d_lpips = float((theirs(a, b).reshape(-1) - lp(a, b).reshape(-1)).abs().max())
        w = torch.randn(2, 512, device=dev)
        d_g = float((G_ref([w], randomize_noise=False)[0] - G([w], randomize_noise=False)[0]).abs().max())
    print(f"{sbs.platform.processor() if dev.type == 'cpu' else torch.cuda.get_device_name()} | torch {torch.__version__}"
          f" | G {args.size} px, channel max {args.channel_max} | LPIPS-VGG v0.1 with a RANDOM trunk (no weights "
          f"downloaded; same cost as ImageNet's) | agreement: G max |Δ| {d_g:.1e}, LPIPS max |Δ| {d_lpips:.1e}"
          f"\nrosinality's ops: {sbs.ROS_OPS}", flush=True)

    rows = []
    for batch in [int(x) for x in args.batches.split(",")]:
        imgs = (torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(2)) * 2 - 1).to(dev)
        rosinality_loop(helpers, G_ref, theirs, imgs, args.warmup)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        s_ref, l_ref = rosinality_loop(helpers, G_ref, theirs, imgs, args.steps)
        m_ref = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else math.nan
        for prec in args.precisions.split(","):
            ours_loop(G, lp, imgs, args.warmup, prec)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            s, l_ours = ours_loop(G, lp, imgs, args.steps, prec)
            m = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else math.nan
            row = dict(batch=batch, precision=prec, steps=args.steps, size=args.size, ref_s=s_ref, ours_s=s,
                       ratio=s_ref / s, ref_peak_gib=m_ref, ours_peak_gib=m, ref_final_lpips=l_ref,
                       ours_final_lpips=l_ours)
            rows.append(row)
            print(f"  batch {batch} {prec}: rosinality {s_ref:.2f} s, toonlab {s:.2f} s, ratio {s_ref / s:.2f}x",
                  flush=True)
    per = 1000 / args.steps
    print(f"\n| batch | our precision | rosinality s/1000 steps | toonlab s/1000 steps | ratio | peak GiB ref / ours "
          f"| final LPIPS ref / ours |\n|---:|---|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['precision']} | {r['ref_s'] * per:.1f} | {r['ours_s'] * per:.1f} | "
              f"{r['ratio']:.2f}× | {r['ref_peak_gib']:.2f} / {r['ours_peak_gib']:.2f} | "
              f"{r['ref_final_lpips']:.4f} / {r['ours_final_lpips']:.4f} |")
    ones = {r["precision"]: r["ours_s"] for r in rows if r["batch"] == 1}
    for r in rows:
        if r["batch"] > 1 and r["precision"] in ones:
            print(f"toonlab batch {r['batch']} / batch 1 ({r['precision']}): {r['ours_s'] / ones[r['precision']]:.2f}× "
                  "the time (target <= 2)")
    if args.json:
        write_json_atomic(args.json, dict(workload="projection", agreement=dict(G=d_g, lpips=d_lpips), ref_ops=sbs.ROS_OPS,
                                          rows=rows))


if __name__ == "__main__":
    main()
