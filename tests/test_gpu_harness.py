"""The issue-17 GPU harness without a GPU: the plan fits its budget, the summary never invents a
row, and the side-by-side scripts take the reference functions out of the reference's own file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def _plan(*steps: str) -> list[tuple[str, int, str]]:
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), *steps], cwd=ROOT, capture_output=True,
                         text=True, env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin", "OUT": "/tmp/unused"}, check=True)
    plan = []
    for line in out.stdout.splitlines():
        m = re.match(r"^(\S+) \((\d+) s\): (.*)$", line)
        assert m, line
        plan.append((m[1], int(m[2]), m[3]))
    return plan


def test_issue17_plan_is_the_default_fits_one_call_and_puts_training_first() -> None:
    plan = _plan()
    assert plan == _plan("issue17")
    names = [p[0] for p in plan]
    assert names[:4] == ["env", "build", "ops_tests", "sbs_train"]
    assert names.index("sbs_project") < names.index("sbs_animegan") < names.index("sbs_fid") \
        < names.index("sbs_stargan2") < names.index("sbs_finetune")
    assert sum(p[1] for p in plan) <= 540  # one device call of <= 9 min
    cmds = dict((p[0], p[2]) for p in plan)
    assert "tests/test_ops_cuda.py" in cmds["ops_tests"]
    for name in ("sbs_train", "sbs_project", "sbs_fid", "sbs_stargan2"):
        assert "--device cuda" in cmds[name] and f"--json /tmp/unused/{name}.json" in cmds[name]
    assert "--batch 32" in cmds["sbs_train"] and "--profile" in cmds["sbs_train"]
    assert "--batches 1,8" in cmds["sbs_project"]


def test_tiny_plan_passes_cpu_and_tiny() -> None:
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), "sbs-train", "sbs-fid"], cwd=ROOT,
                         capture_output=True, text=True, check=True,
                         env={"DRY_RUN": "1", "TINY": "1", "PATH": "/usr/bin:/bin", "OUT": "/tmp/unused"})
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all("--device cpu --tiny" in line for line in lines)


def test_summary_lists_rows_it_has_and_never_fills_in_the_rest(tmp_path: Path) -> None:
    import issue17_summary

    (tmp_path / "sbs_stargan2.json").write_text(json.dumps(dict(size=256, batch=8, rows=[
        dict(precision="bf16", ref_s=0.5, ours_s=0.25, ratio=2.0)])))
    text = "\n".join(issue17_summary.rows(tmp_path))
    assert "| StarGAN v2 256 px iteration, batch 8, ours bf16 | clovaai 500 ms | 250 ms | 2.00× | ≥ 1.5× |" in text
    missing = text.splitlines()[-1]
    assert missing.startswith("not run / not finished:")
    for name in ("sbs_train", "sbs_finetune", "sbs_project", "sbs_animegan", "sbs_fid"):
        assert name in missing
    assert "sbs_stargan2" not in missing


def test_projector_helpers_come_from_the_reference_file(tmp_path: Path) -> None:
    pytest.importorskip("lpips")
    import project_sidebyside as ps

    (tmp_path / "projector.py").write_text(
        "import lpips\nfrom model import Generator\n\n"
        "def noise_regularize(noises):\n    return 7\n\n"
        "def noise_normalize_(noises):\n    pass\n\n"
        "def get_lr(t, initial_lr, rampdown=0.25, rampup=0.05):\n    return initial_lr * 2\n\n"
        "def latent_noise(latent, strength):\n    return latent\n\n"
        "if __name__ == '__main__':\n    raise SystemExit('never run')\n")
    h = ps.load_projector_helpers(tmp_path)  # the bare-name imports at its top are not executed
    assert h.noise_regularize([]) == 7 and h.get_lr(0.5, 0.1) == pytest.approx(0.2)
    (tmp_path / "projector.py").write_text("def get_lr(t, lr):\n    return lr\n")
    with pytest.raises(SystemExit, match="lacks noise_regularize"):
        ps.load_projector_helpers(tmp_path)


def test_clovaai_loader_rewrites_the_first_width_only_where_expected(tmp_path: Path) -> None:
    import stargan2_sidebyside as sg

    core = tmp_path / "core"
    core.mkdir()
    (core / "model.py").write_text("from munch import Munch\nfrom core.wing import FAN\n"
                                   "def width(img_size):\n    dim_in = 2**14 // img_size\n    return dim_in\n")
    (core / "solver.py").write_text("".join(f"def {n}(*a, **k):\n    return '{n}'\n" for n in (
        "compute_d_loss", "compute_g_loss", "moving_average", "adv_loss", "r1_reg")))
    (core / "utils.py").write_text("def he_init(m):\n    return 'he'\n")
    with pytest.raises(SystemExit, match="expected 3"):
        sg.load_clovaai(tmp_path, dim_in=8)  # one occurrence, not their three: refuse rather than guess
    cv = sg.load_clovaai(tmp_path, dim_in=None)
    assert cv.model.width(256) == 64 and cv.compute_g_loss() == "compute_g_loss" and cv.he_init(None) == "he"
    m = cv.Munch(a=1)
    m.b = 2
    assert m.a == 1 and m["b"] == 2
