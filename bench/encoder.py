"""Encoder vs optimisation: seconds per image and reconstruction quality (docs/BENCHMARKS.md, "Encoder").

    python bench/encoder.py --n 8 --json bench_encoder.json                  # everything
    python bench/encoder.py --n 8 --parts plain --json plain.json            # only plain optimisation
    python bench/encoder.py --n 8 --parts encoder --json enc.json --merge plain.json --report table.md

Targets: (a) ``--n`` held-out renders of the synthetic ``photo`` domain (seed 7; the bundled
generator was trained on seed 0 and the bundled encoder's real images were seed 0 too — these are
renders, not generator samples); (b) scikit-image's astronaut, aligned by ``inversion/align.py``
(FFHQ crop at 256 px, LANCZOS to the generator's 64 px). Methods: the encoder alone; the encoder
+ 50 and + 200 projector steps (``inversion/project.py`` started from the encoder's W+); plain
optimisation (rosinality's schedule, from the mean w) at 400 and 1000 steps — 1000 on the first
``--n-1000`` synthetic faces and the astronaut only when CPU time is short. All targets of a
method are optimised as one batch (each image is its own problem; see project.py), so seconds per
image are the batch's seconds / images.

Quality: LPIPS (the projector's loss network; a RANDOM VGG16 trunk when torchvision's ImageNet
weights are not on disk — nothing downloads; the table says which) and pixel MSE in [-1, 1], of
the final rendering against the target, at 64 px. "Steps to plain-400 LPIPS" reads the projector's
per-10-step LPIPS history of the encoder-started run (no latent noise there, so the history is
the rendering's LPIPS).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image

from inversion.encoder import encode, load_encoder
from inversion.project import ProjectConfig, build_perceptual, project
from stylegan2.checkpoint import load_generator
from stylegan2.sampling import render
from toonlab.errors import UserInputError
from toonlab.images import to_tensor
from toonlab.runtime import bundled_generator, progress
from toonlab.synthetic import SyntheticFaces


def targets(n: int, size: int) -> tuple[torch.Tensor, list[str]]:
    """``n`` held-out photo renders, then the aligned astronaut (when dlib is available)."""
    faces = SyntheticFaces("photo", size, length=n, seed=7)
    imgs = [faces[i] for i in range(n)]
    names = [f"photo{i}" for i in range(n)]
    try:
        from skimage import data

        from inversion.align import align_face, detect_faces

        photo = Image.fromarray(data.astronaut())
        aligned = align_face(photo, detect_faces(photo)[0], 256)
        imgs.append(to_tensor(aligned.resize((size, size), Image.Resampling.LANCZOS)))
        names.append("astronaut")
    except (ImportError, UserInputError, IndexError) as e:  # no dlib / landmark model: synthetic only
        print(f"note: no astronaut ({str(e).splitlines()[0]})", file=sys.stderr)
    return torch.stack(imgs), names


@torch.no_grad()
def quality(lp: torch.nn.Module, rec: torch.Tensor, x: torch.Tensor) -> tuple[list[float], list[float]]:
    rec = rec.clamp(-1, 1)
    return lp(rec, x).reshape(-1).tolist(), (rec - x).square().mean(dim=(1, 2, 3)).tolist()


def encoder_timing(enc, G, x: torch.Tensor, repeats: int = 3) -> dict[str, float]:
    """ms per image: batch 1 (each image alone, best of ``repeats`` passes) and one batch of all."""
    encode(enc, G, x[:1])  # warm-up
    per = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(len(x)):
            encode(enc, G, x[i : i + 1])
        per.append((time.perf_counter() - t) / len(x))
    t = time.perf_counter()
    for _ in range(repeats):
        encode(enc, G, x)
    batch = (time.perf_counter() - t) / repeats / len(x)
    return {"ms_per_image_batch1": 1000 * min(per), "ms_per_image_batched": 1000 * batch, "batch": len(x)}


QUICK = 1


def run_method(G, lp, x, steps: int, init: torch.Tensor | None) -> dict:
    steps = max(1, steps // QUICK)
    cfg = ProjectConfig(steps=steps, n_mean_latent=10000)
    t = time.perf_counter()
    res = project(G, x, lp, cfg, show_progress=True, init=init)
    secs = time.perf_counter() - t
    lpips_v, mse_v = quality(lp, res.image, x)
    hist = [(h["step"], h["perceptual"]) for h in res.history]
    return {"steps": steps, "seconds": secs, "sec_per_image": secs / len(x), "lpips": lpips_v, "mse": mse_v,
            "history": hist}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="held-out synthetic photo renders")
    ap.add_argument("--n-1000", type=int, default=2, help="synthetic faces in the 1000-step plain run (+ astronaut)")
    ap.add_argument("--parts", choices=["all", "plain", "encoder"], default="all")
    ap.add_argument("--encoder", default=None, help="encoder file [bundled]")
    ap.add_argument("--ckpt", default=None, help="generator [bundled]")
    ap.add_argument("--json", default=None)
    ap.add_argument("--merge", action="append", default=[], help="earlier --json results to include in the report")
    ap.add_argument("--report", default=None, help="write the markdown table here")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="smoke run: every step count / 40")
    a = ap.parse_args()
    global QUICK
    QUICK = 40 if a.quick else 1
    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = Path(a.ckpt) if a.ckpt else bundled_generator()
    G = load_generator(ckpt).eval().requires_grad_(False)
    try:
        lp = build_perceptual("lpips", None, torch.device("cpu"))
        trunk = "ImageNet VGG16"
    except UserInputError:
        lp = build_perceptual("random", None, torch.device("cpu"))
        trunk = "RANDOM VGG16 trunk (no ImageNet weights on disk)"
    x, names = targets(a.n, G.size)
    out: dict = {"machine": f"{platform.machine()} CPU, torch threads {torch.get_num_threads()}",
                 "date": str(date.today()), "names": names, "lpips_trunk": trunk, "methods": {}}
    for m in a.merge:
        out["methods"].update(json.loads(Path(m).read_text())["methods"])
    M = out["methods"]
    if a.parts in ("all", "encoder"):
        enc = load_encoder(a.encoder, generator=ckpt)
        out["encoder"] = str(enc.path)
        prev = torch.get_num_threads()
        for nt in (1, 2):  # one and two CPU threads (the machine is shared: both are worth seeing)
            torch.set_num_threads(nt)
            out[f"timing_{nt}t"] = encoder_timing(enc, G, x)
        torch.set_num_threads(prev)
        out["timing"] = min((out["timing_1t"], out["timing_2t"]), key=lambda t: t["ms_per_image_batch1"])
        w = encode(enc, G, x)
        lpips_v, mse_v = quality(lp, render(G, w), x)
        M["encoder"] = {"steps": 0, "sec_per_image": out["timing"]["ms_per_image_batch1"] / 1000,
                        "lpips": lpips_v, "mse": mse_v, "history": []}
        lpips_v, mse_v = quality(lp, render(G, G.mean_w()[:, None].expand(len(x), G.n_latent, -1)), x)
        M["w_avg"] = {"steps": 0, "sec_per_image": 0.0, "lpips": lpips_v, "mse": mse_v, "history": []}
        for steps in (50, 200):
            M[f"encoder+{steps}"] = run_method(G, lp, x, steps, w)
    if a.parts in ("all", "plain"):
        M["plain400"] = run_method(G, lp, x, 400, None)
        sub = list(range(min(a.n_1000, a.n))) + ([len(x) - 1] if names[-1] == "astronaut" else [])
        r = run_method(G, lp, x[sub], 1000, None)
        r["subset"] = [names[i] for i in sub]
        M["plain1000"] = r
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    table = report(out)
    print(table)
    if a.report:
        Path(a.report).write_text(table)


def _mean(v: list[float]) -> float:
    return sum(v) / max(1, len(v))


def report(out: dict) -> str:
    M, names = out["methods"], out["names"]
    syn = [i for i, n in enumerate(names) if n != "astronaut"]
    ast = names.index("astronaut") if "astronaut" in names else None
    rows = ["| method | s / image | LPIPS synthetic | MSE synthetic | LPIPS astronaut | MSE astronaut |",
            "|---|---|---|---|---|---|"]
    order = ["w_avg", "encoder", "encoder+50", "encoder+200", "plain400", "plain1000"]
    for k in order:
        if k not in M:
            continue
        r = M[k]
        sub = r.get("subset")
        idx = {n: i for i, n in enumerate(sub)} if sub else {n: i for i, n in enumerate(names)}
        s_idx = [idx[names[i]] for i in syn if names[i] in idx]
        ls = _mean([r["lpips"][i] for i in s_idx])
        ms = _mean([r["mse"][i] for i in s_idx])
        la = f"{r['lpips'][idx['astronaut']]:.4f}" if ast is not None and "astronaut" in idx else "—"
        ma = f"{r['mse'][idx['astronaut']]:.4f}" if ast is not None and "astronaut" in idx else "—"
        label = {"w_avg": "mean w (no inversion)", "encoder": "encoder alone", "plain400": "plain optimisation 400",
                 "plain1000": "plain optimisation 1000"}.get(k, k.replace("+", " + ") + " steps")
        n_s = f" (N={len(s_idx)})"
        rows.append(f"| {label} | {r['sec_per_image']:.3g} | {ls:.4f}{n_s} | {ms:.4f} | {la} | {ma} |")
    lines = ["\n".join(rows)]
    for nt in (1, 2):
        t = out.get(f"timing_{nt}t")
        if t:
            lines.append(f"Encoder alone, {nt} torch thread{'s' if nt > 1 else ''}: {t['ms_per_image_batch1']:.1f} ms "
                         f"per image at batch 1, {t['ms_per_image_batched']:.1f} ms per image in a batch of {t['batch']}.")
    if "plain400" in M and "encoder+200" in M:
        target = _mean(M["plain400"]["lpips"])
        hit = next((s for s, v in M["encoder+200"]["history"] if v is not None and v <= target), None)
        if "encoder+50" in M and _mean(M["encoder+50"]["lpips"]) <= target:
            lines.append(f"Encoder + 50 steps already reaches plain 400-step LPIPS ({_mean(M['encoder+50']['lpips']):.4f} "
                         f"≤ {target:.4f}): ≥ {400 / 50:.0f}× fewer steps.")
        elif hit is not None:
            lines.append(f"The encoder-started run reaches plain 400-step LPIPS ({target:.4f}, all targets) at step "
                         f"{hit}: {400 / hit:.1f}× fewer steps.")
        else:
            lines.append(f"The encoder-started run does not reach plain 400-step LPIPS ({target:.4f}) within 200 steps.")
    lines.append(f"LPIPS trunk: {out['lpips_trunk']}. Machine: {out['machine']}; {out['date']}.")
    return "\n\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
