"""StarGAN v2 training iteration side by side: clovaai's networks + solver losses vs toonlab's trainer.

    python bench/stargan2_sidebyside.py --device cuda --ref ref/stargan-v2                  # issue 17 row
    python bench/stargan2_sidebyside.py --tiny                                              # CPU smoke

One iteration = what ``core/solver.py``'s ``Solver.train`` does per step: D latent-guided, D
reference-guided, G latent-guided (G+F+E step), G reference-guided (G step), EMA of G/F/E.

Reference side, loaded from the clovaai checkout *at run time* (never copied): ``core/model.py``
executed as a module (``w_hpf=0``, the AFHQ setup: no FAN/high-pass branch, so its ``core.wing``
import is dropped, and ``munch`` is stood in for by a dict with attribute access when it is not
installed); ``compute_d_loss``, ``compute_g_loss``, ``moving_average``, ``adv_loss``, ``r1_reg``
from ``core/solver.py`` and ``he_init`` from ``core/utils.py`` are parsed out of their files and
executed (the modules' top levels import their data pipeline, FAN, etc.). The loop body of
``Solver.train`` is re-stated below, networks wrapped in ``nn.DataParallel`` as their
``build_model`` does, Adam as their ``Solver`` builds it.

toonlab side: ``translation.stargan2_trainer.StarGAN2Trainer.train_step`` with the same weights
(clovaai's he-initialised networks copied tensor by tensor, shapes checked; the two outputs are
compared before timing) and the same batches (random tensors already on the device: the model is
timed, not the loader). ``--tiny`` shrinks both sides alike: clovaai's hard-coded first width
``2**14 // img_size`` is rewritten to ``--dim-in`` in their source (3 places, checked).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import ast  # noqa: E402
import copy  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from toonlab.atomic import write_json_atomic  # noqa: E402
from translation.stargan2_trainer import StarGAN2Config, StarGAN2Trainer  # noqa: E402


class _Munch(dict):
    """munch.Munch's part the solver uses: attribute access to dict items."""

    __getattr__ = dict.__getitem__

    def __setattr__(self, k: str, v: object) -> None:
        self[k] = v


def _munch() -> type:
    try:
        from munch import Munch

        return Munch
    except ImportError:
        return _Munch


def load_clovaai(ref: Path, dim_in: int | None) -> types.SimpleNamespace:
    core = ref / "core"
    if not (core / "model.py").is_file() or not (core / "solver.py").is_file():
        sys.exit(f"error: {ref} is not a clovaai stargan-v2 checkout (core/model.py, core/solver.py)")
    src = (core / "model.py").read_text().replace("from core.wing import FAN", "FAN = None")
    src = src.replace("from munch import Munch", "Munch = __munch__")
    if dim_in is not None:
        n = src.count("dim_in = 2**14 // img_size")
        if n != 3:
            sys.exit(f"error: expected 3 'dim_in = 2**14 // img_size' in {core / 'model.py'}, found {n}")
        src = src.replace("dim_in = 2**14 // img_size", f"dim_in = {int(dim_in)}")
    Munch = _munch()
    model = types.ModuleType("clovaai_model")
    model.__dict__["__munch__"] = Munch
    exec(compile(src, str(core / "model.py"), "exec"), model.__dict__)  # noqa: S102 - a local checkout
    ns: dict = {"torch": torch, "nn": nn, "F": F, "np": np, "Munch": Munch}
    for file, names in ((core / "solver.py", {"compute_d_loss", "compute_g_loss", "moving_average", "adv_loss",
                                              "r1_reg"}),
                        (core / "utils.py", {"he_init"})):
        tree = ast.parse(file.read_text(), str(file))
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
        if {f.name for f in funcs} != names:
            sys.exit(f"error: {file} lacks {', '.join(sorted(names - {f.name for f in funcs}))}")
        exec(compile(ast.Module(body=funcs, type_ignores=[]), str(file), "exec"), ns)  # noqa: S102
    return types.SimpleNamespace(model=model, Munch=Munch, **{k: ns[k] for k in (
        "compute_d_loss", "compute_g_loss", "moving_average", "he_init")})


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Tensor by tensor in definition order (the two codebases name layers differently), shapes checked."""
    a, b = list(src.state_dict().values()), dst.state_dict()
    if len(a) != len(b):
        sys.exit(f"error: {type(src).__name__}: {len(a)} tensors in clovaai's, {len(b)} in ours")
    new = {}
    for (k, t), s in zip(b.items(), a):
        if t.shape != s.shape:
            sys.exit(f"error: {type(src).__name__}.{k}: ours {tuple(t.shape)}, clovaai's {tuple(s.shape)}")
        new[k] = s
    dst.load_state_dict(new, strict=True)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", type=Path, default=Path("/work/ref/stargan-v2"), help="clovaai stargan-v2 checkout")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--domains", type=int, default=2)
    ap.add_argument("--dim-in", type=int, default=None, help="first width on both sides (default 2**14 / size)")
    ap.add_argument("--max-conv-dim", type=int, default=512)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precisions", default="fp32", help="our side: fp32 and/or bf16 (clovaai: fp32 only)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: 32 px, batch 2, widths 8..64, 2 iterations")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.tiny:
        args.size, args.batch, args.dim_in, args.max_conv_dim, args.iters, args.warmup = 32, 2, 8, 64, 2, 1
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but no CUDA GPU is visible")
        from toonlab.runtime import enable_tf32

        enable_tf32()  # TF32 for both sides alike
    cv = load_clovaai(args.ref.resolve(), args.dim_in)
    M = cv.Munch
    a = M(img_size=args.size, style_dim=64, latent_dim=16, num_domains=args.domains, w_hpf=0, lambda_reg=1.0,
          lambda_sty=1.0, lambda_ds=1.0, lambda_cyc=1.0, lr=1e-4, f_lr=1e-6, beta1=0.0, beta2=0.99, weight_decay=1e-4)
    torch.manual_seed(0)
    m = cv.model
    raw = M(generator=m.Generator(a.img_size, a.style_dim, max_conv_dim=args.max_conv_dim, w_hpf=0),
            mapping_network=m.MappingNetwork(a.latent_dim, a.style_dim, a.num_domains),
            style_encoder=m.StyleEncoder(a.img_size, a.style_dim, a.num_domains, max_conv_dim=args.max_conv_dim),
            discriminator=m.Discriminator(a.img_size, a.num_domains, max_conv_dim=args.max_conv_dim))
    for net in raw.values():
        net.apply(cv.he_init)
    ema_raw = M(**{k: copy.deepcopy(v) for k, v in raw.items() if k != "discriminator"})

    def wrap(d: dict) -> _Munch:  # build_model: every net in DataParallel (a pass-through on one device)
        return M(**{k: (nn.DataParallel(v.to(dev)) if dev.type == "cuda" else v.to(dev)) for k, v in d.items()})

    nets, nets_ema = wrap(raw), wrap(ema_raw)
    optims = M(**{k: torch.optim.Adam(v.parameters(), lr=a.f_lr if k == "mapping_network" else a.lr,
                                      betas=[a.beta1, a.beta2], weight_decay=a.weight_decay) for k, v in nets.items()})

    def ref_iter(x_real, y_org, x_ref, x_ref2, y_trg, z_trg, z_trg2) -> None:
        """Solver.train's loop body (w_hpf = 0: masks None), re-stated."""
        d_loss, _ = cv.compute_d_loss(nets, a, x_real, y_org, y_trg, z_trg=z_trg, masks=None)
        for o in optims.values():
            o.zero_grad()
        d_loss.backward()
        optims.discriminator.step()
        d_loss, _ = cv.compute_d_loss(nets, a, x_real, y_org, y_trg, x_ref=x_ref, masks=None)
        for o in optims.values():
            o.zero_grad()
        d_loss.backward()
        optims.discriminator.step()
        g_loss, _ = cv.compute_g_loss(nets, a, x_real, y_org, y_trg, z_trgs=[z_trg, z_trg2], masks=None)
        for o in optims.values():
            o.zero_grad()
        g_loss.backward()
        optims.generator.step()
        optims.mapping_network.step()
        optims.style_encoder.step()
        g_loss, _ = cv.compute_g_loss(nets, a, x_real, y_org, y_trg, x_refs=[x_ref, x_ref2], masks=None)
        for o in optims.values():
            o.zero_grad()
        g_loss.backward()
        optims.generator.step()
        cv.moving_average(nets.generator, nets_ema.generator, beta=0.999)
        cv.moving_average(nets.mapping_network, nets_ema.mapping_network, beta=0.999)
        cv.moving_average(nets.style_encoder, nets_ema.style_encoder, beta=0.999)

    g = torch.Generator().manual_seed(0)
    B, S = args.batch, args.size

    def batch() -> list[torch.Tensor]:
        x = lambda: (torch.rand(B, 3, S, S, generator=g) * 2 - 1).to(dev)
        y = lambda: torch.randint(0, args.domains, (B,), generator=g).to(dev)
        return [x(), y(), x(), x(), y()]

    batches = [batch() for _ in range(4)]
    zs = [(torch.randn(B, 16, generator=g).to(dev), torch.randn(B, 16, generator=g).to(dev)) for _ in range(4)]

    def time_ref(n: int) -> float:
        _sync(dev)
        t = time.perf_counter()
        for i in range(n):
            x_src, y_src, x_ref, x_ref2, y_ref = batches[i % 4]
            ref_iter(x_src.clone(), y_src, x_ref, x_ref2, y_ref, *zs[i % 4])  # their D loss sets requires_grad on x
        _sync(dev)
        return time.perf_counter() - t

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for prec in args.precisions.split(","):
            cfg = StarGAN2Config(out=str(Path(tmp) / prec), img_size=S, batch=B, precision=prec, tensorboard=False,
                                 dim_in=args.dim_in, max_conv_dim=args.max_conv_dim, mapping_hidden=512)
            t = StarGAN2Trainer(cfg, None, dev, domain_names=[f"d{i}" for i in range(args.domains)])
            for mine, theirs in ((t.G, raw.generator), (t.F, raw.mapping_network), (t.E, raw.style_encoder),
                                 (t.D, raw.discriminator), (t.G_ema, ema_raw.generator),
                                 (t.F_ema, ema_raw.mapping_network), (t.E_ema, ema_raw.style_encoder)):
                _copy_weights(theirs, mine)
            trainers[prec] = t
        # agreement (before any step changes the weights): D logits, G image, F and E styles
        t = trainers[args.precisions.split(",")[0]]
        x, y = batches[0][0], batches[0][1]
        with torch.no_grad():
            s_ref, s_ours = raw.mapping_network(zs[0][0], y), t.F(zs[0][0], y)
            diffs = dict(F=(s_ref - s_ours).abs().max(), G=(raw.generator(x, s_ref) - t.G(x, s_ref)).abs().max(),
                         E=(raw.style_encoder(x, y) - t.E(x, y)).abs().max(),
                         D=(raw.discriminator(x, y) - t.D(x, y)).abs().max())
        diffs = {k: float(v) for k, v in diffs.items()}
        print(f"{torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU'} | torch {torch.__version__} | "
              f"StarGAN v2 {S} px, batch {B}, {args.domains} domains, dim_in {args.dim_in or 2**14 // S}, max conv dim "
              f"{args.max_conv_dim} | same weights: max |Δ| " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
              flush=True)

        time_ref(args.warmup)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        s_ref = time_ref(args.iters) / args.iters
        m_ref = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
        print(f"  clovaai: {s_ref * 1e3:.0f} ms / iteration", flush=True)
        for prec, tr in trainers.items():
            for i in range(args.warmup):
                tr.train_step(batches[i % 4])
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(dev)
            t0 = time.perf_counter()
            for i in range(args.iters):
                tr.train_step(batches[i % 4])
            _sync(dev)
            s = (time.perf_counter() - t0) / args.iters
            m_ours = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
            tr.stats.close()
            rows.append(dict(precision=prec, ref_s=s_ref, ours_s=s, ratio=s_ref / s, ref_peak_gib=m_ref,
                             ours_peak_gib=m_ours))
            print(f"  toonlab {prec}: {s * 1e3:.0f} ms / iteration, ratio {s_ref / s:.2f}x", flush=True)
    print("\n| our precision | clovaai ms/it | toonlab ms/it | ratio (target >= 1.5) | img/s ref / ours | peak GiB ref / ours |"
          "\n|---|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['ref_s'] * 1e3:.0f} | {r['ours_s'] * 1e3:.0f} | {r['ratio']:.2f}× | "
              f"{B / r['ref_s']:.1f} / {B / r['ours_s']:.1f} | {r['ref_peak_gib']:.2f} / {r['ours_peak_gib']:.2f} |")
    if args.json:
        write_json_atomic(args.json, dict(workload="stargan2", size=S, batch=B, agreement=diffs, rows=rows))


if __name__ == "__main__":
    main()
