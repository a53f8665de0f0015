"""FID side by side: torch-fidelity's ``calculate_metrics`` vs toonlab's metrics path, same images.

    python bench/fid_sidebyside.py --device cuda --n 10000 --size 256        # issue 17 row
    python bench/fid_sidebyside.py --tiny                                    # CPU smoke (N=16, 32 px)

N images of a random config-f generator (set A) and ``--n-ref`` more (set B, other seeds) are rendered and
written as PNG folders once, untimed. Set B plays the cached reference statistics: each side
computes and caches B's statistics first (untimed), then the timed call is "FID of folder A
against the cached B" — torch-fidelity with ``input2_cache_name``, toonlab with
``metrics.compare_sources`` over ``DatasetSource`` folders and its own statistics cache. Both read
the same PNGs with 4 loader workers (torch-fidelity's default) and the same Inception-v3 weights:
the real FID file when it is on disk (hub cache or ``--inception-weights``), else RANDOM weights
(torchvision's init, written to a temporary file both sides load: timing is faithful, the FID
value meaningless — said in the output). The two FIDs must agree (printed, relative difference).
TF32: torch-fidelity runs with torch's defaults, as its users run it (on a GPU: TF32 cuDNN
convolutions); toonlab turns TF32 off while extracting features (FID must not depend on the GPU
generation), so on a GPU the two FIDs may differ in the 4th-5th digit and our side does more
arithmetic. On the CPU both are plain fp32.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from metrics import DatasetSource, GeneratorSource, build_feature_extractor, compare_sources, source_statistics  # noqa: E402
from metrics.features import _random_inception_state  # noqa: E402
from stylegan2.networks import Generator  # noqa: E402
from toonlab.atomic import write_json_atomic  # noqa: E402
from toonlab.weights import WeightsNotFound  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def write_folder(G: Generator, n: int, seed: int, folder: Path, batch: int, dev: torch.device) -> None:
    """n PNGs (fast zlib level; PIL's encoder releases the GIL, so a thread pool scales)."""
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True)
    i = 0
    with torch.inference_mode(), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        jobs = []
        for u8 in GeneratorSource(G, n, seed=seed, device=dev).batches(batch, dev):
            for img in u8.permute(0, 2, 3, 1).cpu().numpy():
                jobs.append(pool.submit(Image.fromarray(img).save, folder / f"{i:06d}.png", compress_level=1))
                i += 1
        for j in jobs:
            j.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-ref", type=int, default=None, help="images in the cached reference set B (default: --n)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64, help="feature batch, both sides")
    ap.add_argument("--workers", type=int, default=4, help="our loader workers (torch-fidelity uses min(4, 2 x cores))")
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--tmp", default=None, help="folder for the PNGs and both caches (default: a temporary one)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke: N=16 (12 cached), 32 px, batch 8, 2 workers")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.tiny:
        args.n, args.size, args.batch, args.workers = min(args.n, 16), 32, 8, 2
        args.n_ref = min(args.n_ref or args.n, 12)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but no CUDA GPU is visible")
    import torch_fidelity

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        os.environ["TOONLAB_CACHE"] = str(root / "toonlab-cache")
        try:
            ext = build_feature_extractor("inception", args.inception_weights, dev)
            weights, what = ext.label, f"Inception-v3 FID weights {ext.label}"
        except WeightsNotFound:
            weights = str(root / "inception-random.pth")
            Path(weights).write_bytes(_random_inception_state().getvalue())
            ext = build_feature_extractor("inception-random", None, dev)
            what = "RANDOM Inception-v3 weights (no weights file on disk): timing faithful, FID value meaningless"
        torch.manual_seed(0)
        G = Generator(args.size, channel_max=512 if args.size > 64 else 64).to(dev).eval().requires_grad_(False)
        t0 = time.perf_counter()
        write_folder(G, args.n, 0, root / "A", args.batch, dev)
        n_ref = args.n_ref or args.n
        write_folder(G, n_ref, 1, root / "B", args.batch, dev)
        print(f"{torch.cuda.get_device_name() if dev.type == 'cuda' else 'CPU'} | torch {torch.__version__} | "
              f"torch-fidelity {torch_fidelity.__version__} | {what}\nwrote {args.n} + {n_ref} PNGs at {args.size} px in "
              f"{time.perf_counter() - t0:.1f} s (untimed)", flush=True)
        tf_kw = dict(fid=True, cuda=dev.type == "cuda", batch_size=args.batch, verbose=False, cache=True,
                     cache_root=str(root / "tf-cache"), feature_extractor_weights_path=weights, samples_shuffle=False)
        # cache B on both sides (the "cached statistics"); also warms up cuDNN and the loaders
        torch_fidelity.calculate_metrics(input1=str(root / "B"), input2=str(root / "B"), input1_cache_name="B",
                                         input2_cache_name="B", **tf_kw)
        src_b = DatasetSource(str(root / "B"), args.size, workers=args.workers)
        source_statistics(src_b, ext, batch=args.batch, device=dev, show_progress=False)

        _sync(dev)
        t = time.perf_counter()
        res_tf = torch_fidelity.calculate_metrics(input1=str(root / "A"), input2=str(root / "B"), input2_cache_name="B",
                                                  **tf_kw)
        _sync(dev)
        s_tf = time.perf_counter() - t
        t = time.perf_counter()
        res = compare_sources(DatasetSource(str(root / "A"), args.size, workers=args.workers), src_b, ext,
                              batch=args.batch, device=dev, show_progress=False)
        _sync(dev)
        s_ours = time.perf_counter() - t
        if not res["cached"][1] or res["cached"][0]:
            sys.exit(f"error: expected A computed and B from the cache, got cached={res['cached']}")
        fid_tf, fid_ours = float(res_tf["frechet_inception_distance"]), float(res["fid"])
    rel = abs(fid_tf - fid_ours) / max(abs(fid_tf), 1e-12)
    print(f"\n| side | s (A features + FID vs cached B) | img/s | FID |\n|---|---:|---:|---:|\n"
          f"| torch-fidelity {torch_fidelity.__version__} calculate_metrics | {s_tf:.2f} | {args.n / s_tf:,.0f} | "
          f"{fid_tf:.4f} |\n| toonlab metrics.compare_sources | {s_ours:.2f} | {args.n / s_ours:,.0f} | {fid_ours:.4f} |")
    print(f"\ntoonlab / torch-fidelity time: {s_ours / s_tf:.2f}x (target <= 1.2); FIDs differ by {rel:.1e} (relative)")
    if args.json:
        write_json_atomic(args.json, dict(workload="fid", n=args.n, size=args.size, tf_s=s_tf, ours_s=s_ours,
                                          ratio_ours_over_tf=s_ours / s_tf, fid_tf=fid_tf, fid_ours=fid_ours,
                                          fid_rel_diff=rel, weights=what))


if __name__ == "__main__":
    main()
