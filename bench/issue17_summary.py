"""The issue-17 table from one gpu_session.sh run: reads the rows' JSON files in a folder, prints markdown.

    python bench/issue17_summary.py OUT_DIR        (also writes OUT_DIR/summary.md)

Each row shows both sides' figures, the ratio and the issue's target; a missing JSON (a step that
did not run or did not finish) is listed as "not run" — never filled in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toonlab.atomic import write_text_atomic  # noqa: E402


def _load(folder: Path, name: str) -> dict | None:
    p = folder / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def rows(folder: Path) -> list[str]:
    out = ["| workload | reference | toonlab | ratio | target |", "|---|---|---|---|---|"]
    t = _load(folder, "sbs_train")
    if t:
        for r in t["rows"]:
            out.append(f"| StyleGAN2 {t['size']} px config-f training, batch {t['batch']}, {r['side']} | rosinality "
                       f"{r['ref_img_s']:.1f} img/s, {r['ref_peak_gib']:.1f} GiB | {r['ours_img_s']:.1f} img/s, "
                       f"{r['ours_peak_gib']:.1f} GiB | {r['ratio']:.2f}× speed, {r['mem_ratio']:.2f}× memory | "
                       "≥ 2.6× speed, ≤ 0.5× memory (ADA off) |")
    f = _load(folder, "sbs_finetune")
    if f:
        base = f["rows"][0]["s_per_iter"]
        for r in f["rows"][1:]:
            out.append(f"| fine-tuning: {r['method']} ({f['precision']}, batch {f['batch']}) | plain training "
                       f"{base * 1e3 / f['batch']:.1f} ms/img | {r['s_per_iter'] * 1e3 / f['batch']:.1f} ms/img | "
                       f"{r['ratio']:.2f}× the time | ≤ 1.1× (FreezeSG 2 + structure loss 3) |")
    p = _load(folder, "sbs_project")
    if p:
        one = {r["precision"]: r["ours_s"] for r in p["rows"] if r["batch"] == 1}
        for r in p["rows"]:
            per = 1000 / r["steps"]
            extra = (f"; batch {r['batch']} / batch 1: {r['ours_s'] / one[r['precision']]:.2f}×"
                     if r["batch"] > 1 and r["precision"] in one else "")
            out.append(f"| projection {r['size']} px W+ noise LPIPS-VGG (random trunk), batch {r['batch']}, ours "
                       f"{r['precision']} | rosinality {r['ref_s'] * per:.1f} s/1000 steps | {r['ours_s'] * per:.1f} "
                       f"s/1000 steps{extra} | {r['ratio']:.2f}× | ≥ 3× (1 image); batch 8 ≤ 2× batch 1 |")
    a = _load(folder, "sbs_animegan")
    if a:
        for r in a["rows"]:
            out.append(f"| {r['what']} | port {r['ref_s'] * 1e3:.2f} ms | {r['ours_s'] * 1e3:.2f} ms (max abs Δ "
                       f"{r['max_abs_diff']:.1e}) | {r['ratio']:.2f}× | ≥ 2× at 512² |")
    d = _load(folder, "sbs_fid")
    if d:
        out.append(f"| FID of {d['n']:,} samples ({d['size']} px) vs cached statistics | torch-fidelity {d['tf_s']:.1f} s "
                   f"(FID {d['fid_tf']:.3f}) | {d['ours_s']:.1f} s (FID {d['fid_ours']:.3f}, rel. Δ "
                   f"{d['fid_rel_diff']:.1e}) | {d['ratio_ours_over_tf']:.2f}× the time | ≤ 1.2× |")
    s = _load(folder, "sbs_stargan2")
    if s:
        for r in s["rows"]:
            out.append(f"| StarGAN v2 {s['size']} px iteration, batch {s['batch']}, ours {r['precision']} | clovaai "
                       f"{r['ref_s'] * 1e3:.0f} ms | {r['ours_s'] * 1e3:.0f} ms | {r['ratio']:.2f}× | ≥ 1.5× |")
    for name, d in (("training", t), ("projection", p)):
        if d and "NATIVE" in str(d.get("ref_ops", "")):
            out.append(f"| note | {name}: rosinality ran {d['ref_ops']} | | | |")
    missing = [n for n in ("sbs_train", "sbs_finetune", "sbs_project", "sbs_animegan", "sbs_fid", "sbs_stargan2")
               if _load(folder, n) is None]
    if missing:
        out.append("")
        out.append("not run / not finished: " + ", ".join(missing))
    return out


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python bench/issue17_summary.py OUT_DIR")
    folder = Path(sys.argv[1])
    text = "\n".join(rows(folder)) + "\n"
    prof = folder / "sbs_train.profile.md"
    if prof.is_file():
        text += "\n## Top kernels (training row)\n\n" + prof.read_text()
    print(text)
    write_text_atomic(folder / "summary.md", text)


if __name__ == "__main__":
    main()
