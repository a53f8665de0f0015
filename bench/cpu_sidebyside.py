"""CPU side by side: toonlab against the reference code it replaces, same weights, one process.

    python bench/cpu_sidebyside.py --ref /work/ref/stylegan2-pytorch --animegan-ref /work/ref/animegan2-pytorch
    python bench/cpu_sidebyside.py --rows a,e --repeats 5 --threads 1

The reference code is *imported from the given folders at run time* (never copied into this
repository): rosinality's ``model.py`` with its ``op/`` package, bryandlee's AnimeGANv2
``model.py``. rosinality's ``op`` compiles CUDA extensions at import; on a CPU machine that build
fails, although its CPU paths (``upfirdn2d_native``, the plain ``fused_leaky_relu``) never use
them. So ``torch.utils.cpp_extension.load`` is replaced by a stub *only while that package is
imported*, inside this script; nothing in toonlab's code paths is touched.

Rows (``--rows``, default all):
  a  config-f G+D step with R1 at 32 px, batch 2 (D main, R1 every step, G main; Adam)
  b  the same step at 64 px, batch 8, channel max 128
  c  G inference at 256 px, config-f, batch 1, constant noise
  d  AnimeGANv2 generator 256², batch 1: the plain module call and translation.inference.Translator
  e  the individual ops (upfirdn2d up/down/blur, bias + leaky ReLU): forward, fwd+bwd, double backward

Both sides get the same weights (rosinality's state dict loads into toonlab's modules with
``strict=True``) and the same inputs; before timing, the outputs are compared (max |Δ|) so the
two columns time the same maths. Timing is interleaved (ref, ours, ref, ours, ...) after one
warm-up call each, and the median of ``--repeats`` is reported; ratio = ref time / our time
(> 1: toonlab is faster). Prints a markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import ops  # noqa: E402
from stylegan2.networks import Discriminator, Generator  # noqa: E402

# --------------------------------------------------------------------------------------------
# Loading the reference code (outside the repository)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_cpp_build() -> Iterator[None]:
    """Make ``torch.utils.cpp_extension.load`` return None while rosinality's ``op`` imports."""
    import torch.utils.cpp_extension as cpp

    saved = cpp.load
    cpp.load = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        cpp.load = saved  # type: ignore[assignment]


ROS_OPS = "not loaded"  # which of rosinality's op implementations the reference side runs


def _native_ops(op: types.ModuleType) -> None:
    """Route rosinality's two ops to the pure-torch paths their own code takes on the CPU (any device)."""
    from collections import abc

    up_mod, act_mod = sys.modules["op.upfirdn2d"], sys.modules["op.fused_act"]

    def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):  # their upfirdn2d, the CPU branch always
        up = up if isinstance(up, abc.Iterable) else (up, up)
        down = down if isinstance(down, abc.Iterable) else (down, down)
        pad = (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else pad
        return up_mod.upfirdn2d_native(input, kernel, *up, *down, *pad)

    def fused_leaky_relu(input, bias=None, negative_slope=0.2, scale=2 ** 0.5):  # their CPU branch
        if bias is not None:
            rest_dim = [1] * (input.ndim - bias.ndim - 1)
            return F.leaky_relu(input + bias.view(1, bias.shape[0], *rest_dim), negative_slope=0.2) * scale
        return F.leaky_relu(input, negative_slope=0.2) * scale

    up_mod.upfirdn2d = op.upfirdn2d = upfirdn2d
    act_mod.fused_leaky_relu = op.fused_leaky_relu = fused_leaky_relu


def load_rosinality(ref: Path, channel_max: int | None = None, build: bool = False) -> types.ModuleType:
    """rosinality's model.py as a fresh module; ``channel_max`` caps its hard-coded channel tables.

    rosinality has no channel cap; the 64-px ch-128 row needs one, so the module's source is read
    and every ``<res>: <expr>,`` entry of its two channel dicts becomes ``min(<expr>, cap)`` before
    it is executed (18 entries; checked). ``build``: let ``op`` compile its CUDA extensions
    (``--device cuda``) instead of stubbing the build out.
    """
    ref = ref.resolve()
    if not (ref / "model.py").is_file() or not (ref / "op").is_dir():
        sys.exit(f"error: {ref} is not a rosinality stylegan2-pytorch checkout (model.py, op/)")
    if str(ref) not in sys.path:
        sys.path.insert(0, str(ref))
    global ROS_OPS
    if build:
        try:
            import op  # noqa: F401  (rosinality's package, from `ref`; compiles its CUDA ops)
            ROS_OPS = "their fused CUDA ops (compiled here)"
        except Exception as e:  # noqa: BLE001 - a failed nvcc/ninja build must not cost the GPU run
            for k in [k for k in sys.modules if k == "op" or k.startswith("op.")]:
                del sys.modules[k]
            with _no_cpp_build():
                import op  # noqa: F401
            _native_ops(op)
            ROS_OPS = (f"their NATIVE pure-torch ops: the CUDA build failed ({type(e).__name__}: "
                       f"{str(e).splitlines()[-1][:120] if str(e) else ''}); reference figures are pessimistic")
            print(f"warning: rosinality's op did not build; {ROS_OPS}", flush=True)
    else:
        with _no_cpp_build():
            import op  # noqa: F401  (rosinality's package, from `ref`)
        ROS_OPS = "their CPU paths (upfirdn2d_native, plain leaky ReLU)"
    src = (ref / "model.py").read_text()
    if channel_max is not None:
        src, n = re.subn(r"(?m)^(\s+)(\d+): (.+),$", rf"\1\2: min(\3, {int(channel_max)}),", src)
        if n != 18:
            sys.exit(f"error: expected 18 channel entries in {ref / 'model.py'}, found {n}")
    mod = types.ModuleType(f"rosinality_model_{channel_max}")
    mod.__file__ = str(ref / "model.py")
    exec(compile(src, str(ref / "model.py"), "exec"), mod.__dict__)  # noqa: S102 - a local checkout
    return mod


def load_animegan_port(ref: Path) -> types.ModuleType:
    ref = ref.resolve()
    path = ref / "model.py"
    if not path.is_file():
        sys.exit(f"error: {ref} has no model.py (bryandlee/animegan2-pytorch)")
    mod = types.ModuleType("animegan2_port_model")
    mod.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)  # noqa: S102
    return mod


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


PROFILE = {"on": False, "top": 15}
DEV = torch.device("cpu")  # --device


def _sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def profile(name: str, fn: Callable[[], object]) -> None:
    """Print the top ops (self CPU time) of one call of ``fn`` (``--profile``)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as _profile

    with _profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    print(f"\n### profile: {name}\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=PROFILE["top"]), flush=True)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so load drifts hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync()
    if PROFILE["on"]:
        for k, fn in fns.items():
            profile(k, fn)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            _sync()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


ROWS: list[tuple[str, str, float, float, float | None]] = []  # (row, what, ref s, ours s, max |Δ|)


def report(row: str, what: str, t: dict[str, float], diff: float | None) -> None:
    ROWS.append((row, what, t["ref"], t["ours"], diff))
    d = "" if diff is None else f", max |Δ| {diff:.2e}"
    print(f"  {row} {what}: ref {t['ref'] * 1e3:.1f} ms, ours {t['ours'] * 1e3:.1f} ms, "
          f"ratio {t['ref'] / t['ours']:.2f}×{d}", flush=True)


def _ms(s: float) -> str:
    return f"{s * 1e3:,.0f}" if s >= 0.1 else f"{s * 1e3:.2f}"


# --------------------------------------------------------------------------------------------
# StyleGAN2 rows
# --------------------------------------------------------------------------------------------


def _pair(ros: types.ModuleType, size: int, channel_max: int | None, seed: int) -> tuple[nn.Module, ...]:
    """(G_ref, D_ref, G_ours, D_ours) with the same weights."""
    torch.manual_seed(seed)
    G_ref = ros.Generator(size, 512, 8, channel_multiplier=2)
    D_ref = ros.Discriminator(size, channel_multiplier=2)
    cm = channel_max if channel_max is not None else 512
    G = Generator(size, 512, 8, channel_multiplier=2, channel_max=cm)
    D = Discriminator(size, channel_multiplier=2, channel_max=cm)
    G.load_state_dict(G_ref.state_dict(), strict=True)
    D.load_state_dict(D_ref.state_dict(), strict=True)
    return G_ref.to(DEV), D_ref.to(DEV), G.to(DEV), D.to(DEV)


def _train_step(G: nn.Module, D: nn.Module, g_opt, d_opt, real: torch.Tensor, batch: int, gamma: float) -> None:
    """One StyleGAN2 iteration as rosinality's train.py runs it: D main, D R1, G main (same code both sides)."""
    z = torch.randn(batch, 512, device=real.device)
    # D main
    G.requires_grad_(False)
    D.requires_grad_(True)
    fake, _ = G([z])
    loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
    d_opt.zero_grad(set_to_none=True)
    loss.backward()
    d_opt.step()
    # D regularisation: R1 (needs the gradient of the gradient: double backward through D)
    x = real.detach().requires_grad_(True)
    pred = D(x)
    (g,) = torch.autograd.grad(pred.sum(), x, create_graph=True)
    r1 = g.pow(2).reshape(g.shape[0], -1).sum(1).mean()
    d_opt.zero_grad(set_to_none=True)
    (gamma / 2 * r1 + 0 * pred[0]).sum().backward()
    d_opt.step()
    # G main
    G.requires_grad_(True)
    D.requires_grad_(False)
    fake, _ = G([torch.randn(batch, 512, device=real.device)])
    loss = F.softplus(-D(fake)).mean()
    g_opt.zero_grad(set_to_none=True)
    loss.backward()
    g_opt.step()


def _agreement(G_ref, D_ref, G, D, size: int, batch: int) -> float:
    """max |Δ| over G's image (const noise), D's logits and the R1 gradient, same inputs."""
    z = torch.randn(batch, 512, device=DEV)
    with torch.no_grad():
        a, _ = G_ref([z], randomize_noise=False)
        b, _ = G([z], randomize_noise=False)
    diff = float((a - b).abs().max())
    x = torch.randn(batch, 3, size, size, device=DEV)
    grads = []
    for net in (D_ref, D):
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        (g,) = torch.autograd.grad(out.sum(), xi)
        grads.append((out.detach(), g))
    diff = max(diff, float((grads[0][0] - grads[1][0]).abs().max()), float((grads[0][1] - grads[1][1]).abs().max()))
    return diff


def row_train(ros_loader, row: str, size: int, batch: int, channel_max: int | None, repeats: int) -> None:
    ros = ros_loader(channel_max)
    G_ref, D_ref, G, D = _pair(ros, size, channel_max, seed=0)
    diff = _agreement(G_ref, D_ref, G, D, size, batch)
    real = torch.randn(batch, 3, size, size, device=DEV)
    fns = {}
    for name, (g, d) in {"ref": (G_ref, D_ref), "ours": (G, D)}.items():
        g_opt = torch.optim.Adam(g.parameters(), lr=0.002, betas=(0.0, 0.99))
        d_opt = torch.optim.Adam(d.parameters(), lr=0.002, betas=(0.0, 0.99))
        fns[name] = (lambda g=g, d=d, go=g_opt, do=d_opt: _train_step(g, d, go, do, real, batch, 10.0))
    cm = f", channel max {channel_max}" if channel_max else ""
    report(row, f"G+D step with R1, {size} px, batch {batch}{cm}", interleaved(fns, repeats), diff)


def row_inference(ros_loader, size: int, batch: int, repeats: int) -> None:
    G_ref, _, G, _ = _pair(ros_loader(None), size, None, seed=1)
    del _
    z = torch.randn(batch, 512, device=DEV)
    with torch.no_grad():
        diff = float((G_ref([z], randomize_noise=False)[0] - G([z], randomize_noise=False)[0]).abs().max())

    def run(net):
        with torch.inference_mode():
            return net([z], randomize_noise=False)

    t = interleaved({"ref": lambda: run(G_ref), "ours": lambda: run(G)}, repeats)
    report("c", f"G inference, {size} px config-f, batch {batch}", t, diff)


# --------------------------------------------------------------------------------------------
# AnimeGANv2
# --------------------------------------------------------------------------------------------


def row_animegan(port_dir: Path, size: int, repeats: int, variants: tuple[str, ...] = ("fp32",)) -> None:
    """The port's module call vs ours and ``Translator`` runs; ``variants``: ``PREC`` or ``PREC+compile``."""
    from translation.animegan import AnimeGANv2Generator
    from translation.inference import Translator

    port = load_animegan_port(port_dir)
    torch.manual_seed(2)
    P = port.Generator().eval().to(DEV)
    with torch.no_grad():  # GroupNorm starts at weight 1 / bias 0: give the affine real values
        for m in P.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    ours = AnimeGANv2Generator().eval().to(DEV)
    ours.load_state_dict(P.state_dict(), strict=True)
    trs = {}
    for v in variants:
        prec, _, extra = v.partition("+")
        trs[v] = Translator(ours, device=DEV, precision=prec, compile=extra == "compile")
    x = torch.rand(1, 3, size, size, device=DEV) * 2 - 1
    with torch.inference_mode():
        y_ref = P(x)
        d_mod = float((y_ref - ours(x)).abs().max())
        d_tr = {v: float((y_ref - tr(x).float()).abs().max()) for v, tr in trs.items()}

    def run(net):
        with torch.inference_mode():
            return net(x)

    fns = {"ref": lambda: run(P), "ours": lambda: run(ours)}
    fns.update({f"tr {v}": (lambda tr=tr: tr(x)) for v, tr in trs.items()})
    t = interleaved(fns, repeats, warmup=3 if any("compile" in v for v in variants) else 1)
    report("d", f"AnimeGANv2 {size}², module call", {"ref": t["ref"], "ours": t["ours"]}, d_mod)
    for v in trs:
        name = "Translator" if v == "fp32" else f"Translator {v}"
        report("d", f"AnimeGANv2 {size}², {name}", {"ref": t["ref"], "ours": t[f"tr {v}"]}, d_tr[v])


# --------------------------------------------------------------------------------------------
# Individual ops
# --------------------------------------------------------------------------------------------


def _op_cases(ros: types.ModuleType) -> list[tuple[str, Callable | None, Callable | None]]:
    up_ref = sys.modules["op"].upfirdn2d
    k = ops.setup_filter([1, 3, 3, 1], device=DEV)
    k4 = k * 4
    return [
        ("upsample 2 (pad 2,1)", lambda x: up_ref(x, k4, up=2, pad=(2, 1)), lambda x: ops.upfirdn2d(x, k4, up=2, pad=(2, 1))),
        ("downsample 2 (pad 1,1)", lambda x: up_ref(x, k, down=2, pad=(1, 1)),
         lambda x: ops.upfirdn2d(x, k, down=2, pad=(1, 1))),
        ("blur (pad 2,2)", lambda x: up_ref(x, k, pad=(2, 2)), lambda x: ops.upfirdn2d(x, k, pad=(2, 2))),
        ("bias + leaky ReLU", None, None),  # filled per shape (needs a bias of C)
    ]


def row_ops(ros_loader, shapes: list[tuple[int, int, int]], repeats: int) -> None:
    cases = _op_cases(ros_loader(None))  # imports rosinality's op package first
    lrelu_ref = sys.modules["op"].fused_leaky_relu
    for n, c, r in shapes:
        for name, f_ref, f_ours in cases:
            x0 = torch.randn(n, c, r, r, device=DEV)
            if f_ref is None:
                b = torch.randn(c, device=DEV)
                f_ref = (lambda x, b=b: lrelu_ref(x, b))
                f_ours = (lambda x, b=b: ops.fused_leaky_relu(x, b))
            with torch.no_grad():
                diff = float((f_ref(x0) - f_ours(x0)).abs().max())
            xg = x0.clone().requires_grad_(True)

            def fwd(f):
                with torch.no_grad():
                    return f(x0)

            def fwd_bwd(f):
                y = f(xg)
                y.backward(torch.ones_like(y))

            def double(f):  # what R1 does: grad with create_graph, then backward through it
                y = f(xg)
                (g,) = torch.autograd.grad(y.square().sum(), xg, create_graph=True)
                g.square().sum().backward()

            for what, h in (("fwd", fwd), ("fwd+bwd", fwd_bwd), ("double bwd", double)):
                # Millisecond calls are at the mercy of page faults (each fresh multi-MB tensor is a
                # new mmap): time them ~2 s per side instead of `repeats` calls.
                t0 = time.perf_counter()
                h(f_ref)
                _sync()
                reps = max(repeats, min(400, int(2.0 / max(time.perf_counter() - t0, 1e-4))))
                t = interleaved({"ref": lambda h=h: h(f_ref), "ours": lambda h=h: h(f_ours)}, reps, warmup=2)
                report("e", f"{name} {n}×{c}×{r}², {what}", t, diff)


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", type=Path, default=Path("/work/ref/stylegan2-pytorch"), help="rosinality checkout")
    ap.add_argument("--animegan-ref", type=Path, default=Path("/work/ref/animegan2-pytorch"),
                    help="bryandlee animegan2-pytorch checkout")
    ap.add_argument("--rows", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per side (median reported)")
    ap.add_argument("--train-repeats", type=int, default=3, help="timed steps per side for rows a and b")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda: the same side by side on a GPU, "
                    "rosinality's op then compiles its own CUDA extensions")
    ap.add_argument("--size", type=int, default=64, help="row b: image side")
    ap.add_argument("--batch", type=int, default=8, help="row b: batch")
    ap.add_argument("--channel-max", type=int, default=128, help="row b: channel cap (512 = config-f)")
    ap.add_argument("--animegan-size", type=int, default=256, help="row d: image side")
    ap.add_argument("--animegan-variants", default="fp32", help="row d: Translator runs, comma-separated PREC or "
                    "PREC+compile (e.g. fp32,fp16,bf16+compile)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops of one call per side")
    ap.add_argument("--shapes", default="8x128x32", help="op shapes of row e, NxCxR, comma-separated")
    args = ap.parse_args()
    rows = {r.strip() for r in args.rows.split(",") if r.strip()}
    if not rows <= set("abcde"):
        sys.exit(f"error: --rows takes a subset of a,b,c,d,e, got {args.rows!r}")
    torch.set_num_threads(args.threads)
    global DEV
    DEV = torch.device(args.device)
    if DEV.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA GPU is visible")
    PROFILE["on"] = args.profile
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
        assert all(len(s) == 3 for s in shapes)
    except (ValueError, AssertionError):
        sys.exit(f"error: --shapes takes NxCxR[,NxCxR...], got {args.shapes!r}")
    torch.manual_seed(args.seed)
    cache: dict[int | None, types.ModuleType] = {}

    def ros_loader(cm: int | None) -> types.ModuleType:
        if cm not in cache:
            cache[cm] = load_rosinality(args.ref, cm, build=DEV.type == "cuda")
        return cache[cm]

    where = torch.cuda.get_device_name() if DEV.type == "cuda" else f"CPU: {platform.processor() or platform.machine()}"
    print(f"{where}, torch {torch.__version__}, "
          f"{args.threads} thread(s), load average {' '.join(f'{v:.2f}' for v in _loadavg())}", flush=True)
    if "e" in rows:
        row_ops(ros_loader, shapes, args.repeats)  # type: ignore[arg-type]
    if "a" in rows:
        row_train(ros_loader, "a", 32, 2, None, args.train_repeats)
    if "b" in rows:
        cm = None if args.channel_max >= 512 else args.channel_max
        row_train(ros_loader, "b", args.size, args.batch, cm, args.train_repeats)
    if "c" in rows:
        row_inference(ros_loader, 256, 1, args.repeats)
    if "d" in rows:
        row_animegan(args.animegan_ref, args.animegan_size, args.repeats,
                     tuple(v.strip() for v in args.animegan_variants.split(",") if v.strip()))
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in _loadavg())}\n")
    print("| row | workload | reference ms | toonlab ms | ratio (ref / toonlab) | max abs Δ |")
    print("|---|---|---:|---:|---:|---:|")
    for row, what, tr, to, diff in ROWS:
        d = "—" if diff is None else f"{diff:.1e}"
        print(f"| {row} | {what} | {_ms(tr)} | {_ms(to)} | {tr / to:.2f}× | {d} |")
    if args.json:
        from toonlab.atomic import write_json_atomic

        write_json_atomic(args.json, dict(workload="sidebyside", device=where, rows=[
            dict(row=r, what=w, ref_s=a, ours_s=b, ratio=a / b, max_abs_diff=d) for r, w, a, b, d in ROWS]))


def _loadavg() -> tuple[float, float, float]:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return (math.nan,) * 3


if __name__ == "__main__":
    main()
