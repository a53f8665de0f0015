"""Cost of the fine-tuning methods: ``--freeze 2 --structure-loss 3`` vs plain training, per image.

    python bench/finetune.py [--source G.pt] [--batch 8] [--iters 20]
    python bench/finetune.py --size 256 --batch 32 --iters 12 --json out.json   # issue 17 row (GPU)
    python bench/finetune.py --tiny                                             # CPU smoke

Targets: ≤ 1.1× the time per image of plain training (issue 17), ≤ 1.5× a plain fine-tuning
iteration (fine-tuning issue) — the source pass is forward-only, no grad, shared noise, and stops
after block N. ``--size``: a random config-f source of that size is written to a temporary file
(speed does not depend on the weights); otherwise ``--source`` (default: the bundled 64-px one).
The first row is plain StyleGAN2 training (``StyleGAN2Trainer``, same shape, batch and precision,
lazy R1 + path length, EMA, ADA off); fine-tuning rows run ``FinetuneTrainer`` (path length off
while fine-tuning, as its defaults). Runs on the GPU when there is one, else on the CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import header

import torch

from pathlib import Path

from finetune.trainer import FinetuneConfig, FinetuneTrainer
from stylegan2.checkpoint import load_generator, snapshot
from stylegan2.networks import Discriminator, Generator
from stylegan2.training import StyleGAN2Trainer, TrainConfig
from toonlab.atomic import torch_save_atomic, write_json_atomic
from toonlab.runtime import bundled_generator, enable_tf32


def time_iters(source: str, batch: int, iters: int, device: torch.device, precision: str = "fp32",
               warmup: int = 4, plain: bool = False, **method) -> float:
    """Seconds per iteration (after ``warmup``); ``plain``: StyleGAN2Trainer of the source's shape."""
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(out=tmp, batch=batch, snapshot_every=0, sample_every=0, log_every=10**9, iters=10**9,
                      precision=precision, ada=False)
        if plain:
            G = load_generator(source)
            cfg = TrainConfig(size=G.size, channel_max=max(G.config["channels"].values()), **common)
            t = StyleGAN2Trainer(cfg, None, device)
        else:
            cfg = FinetuneConfig(source=source, **common, **method)
            t = FinetuneTrainer(cfg, None, device)
        real = torch.rand(batch, 3, cfg.size, cfg.size, device=device) * 2 - 1
        for _ in range(warmup):
            t.train_step(real)
            t.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            t.train_step(real)
            t.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=str(bundled_generator()))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=4, help="untimed iterations first (>= 16 covers a lazy R1)")
    ap.add_argument("--size", type=int, default=None, help="a random config-f source of this size instead of --source")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--rows", default="all", help="'issue17': plain training, plain fine-tuning, FreezeSG 2 + "
                    "structure loss 3 only")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: random 32-px source (channel max 32), batch 2, "
                    "2 iterations after 2")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.tiny:
        args.size, args.batch, args.iters, args.warmup = 32, 2, 2, 2
    print(header())
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        enable_tf32()
    tmp = tempfile.TemporaryDirectory()
    if args.size:
        torch.manual_seed(0)
        cm = 32 if args.tiny else 512
        G, D = Generator(args.size, channel_max=cm), Discriminator(args.size, channel_max=cm)
        args.source = str(torch_save_atomic(snapshot(G, D, G_train=G), Path(tmp.name) / f"random-{args.size}.pt"))
    rows = [
        ("plain training (StyleGAN2Trainer, ADA off)", {"plain": True}),
        ("plain fine-tuning (no freeze, no structure loss)", {}),
        ("FreezeSG 2", {"freeze": 2}),
        ("FreezeSG 2 + structure loss 3 (rgb)", {"freeze": 2, "structure_loss": 3}),
        ("structure loss 3 (rgb)", {"structure_loss": 3}),
        ("structure loss 3 (features)", {"structure_loss": 3, "structure_on": "features"}),
    ]
    if args.rows == "issue17":
        rows = [r for r in rows if r[0].startswith("plain") or r[1] == {"freeze": 2, "structure_loss": 3}]
    base = None
    out = []
    print(f"\nsource {args.source}, batch {args.batch}, {args.precision}, {args.iters} timed iterations after "
          f"{args.warmup} on {dev}\n")
    print("| method | s/iter | ms/image | × plain training |\n|---|---|---|---|")
    for name, method in rows:
        s = time_iters(args.source, args.batch, args.iters, dev, args.precision, args.warmup, **method)
        base = base or s
        out.append(dict(method=name, s_per_iter=s, ratio=s / base, **{k: v for k, v in method.items()}))
        print(f"| {name} | {s:.3f} | {s * 1e3 / args.batch:.1f} | {s / base:.2f} |", flush=True)
    tmp.cleanup()
    if args.json:
        write_json_atomic(args.json, dict(workload="finetune", batch=args.batch, precision=args.precision, rows=out))


if __name__ == "__main__":
    main()
