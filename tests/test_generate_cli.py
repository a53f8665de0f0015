"""generate.py and the toonlab command group, driven as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from stylegan2.generate import main as generate_main
from tests.conftest import tiny_checkpoint
from toonlab.cli import main as toonlab_main

REPO = Path(__file__).resolve().parents[1]


def tiny_ckpt(tmp_path) -> Path:
    return tiny_checkpoint(tmp_path / "G.pt")


def test_generate_writes_pngs_and_grid(tmp_path):
    ckpt = tiny_ckpt(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(generate_main, ["--ckpt", str(ckpt), "--seeds", "0-3,9", "--truncation", "0.7",
                                           "--out", str(out), "--batch", "2"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.glob("seed*.png"))
    assert names == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png", "seed0009.png"]
    assert Image.open(out / "grid.png").size[0] > 16 * 2
    # Same seed → same image, whatever the batch it was rendered in.
    out2 = tmp_path / "out2"
    r = CliRunner().invoke(generate_main, ["--ckpt", str(ckpt), "--seeds", "3", "--truncation", "0.7",
                                           "--out", str(out2), "--noise-mode", "const"])
    assert r.exit_code == 0, r.output
    assert Image.open(out2 / "seed0003.png").tobytes() == Image.open(out / "seed0003.png").tobytes()


def test_random_noise_mode_is_seeded(tmp_path):
    ckpt = tiny_ckpt(tmp_path)
    for d in ("a", "b"):
        r = CliRunner().invoke(generate_main, ["--ckpt", str(ckpt), "--seeds", "5", "--noise-mode", "random",
                                               "--out", str(tmp_path / d)])
        assert r.exit_code == 0, r.output
    assert (tmp_path / "a/seed0005.png").read_bytes() == (tmp_path / "b/seed0005.png").read_bytes()


def test_bad_input_exits_2_with_one_line(tmp_path):
    cases = [
        ["--ckpt", str(tmp_path / "missing.pt")],
        ["--ckpt", str(tiny_ckpt(tmp_path)), "--seeds", "x-y"],
    ]
    (tmp_path / "junk.pt").write_text("junk")
    cases.append(["--ckpt", str(tmp_path / "junk.pt")])
    for args in cases:
        r = CliRunner().invoke(generate_main, args + ["--out", str(tmp_path / "o")])
        assert r.exit_code == 2, (args, r.output)
        assert r.output.strip().count("\n") == 0 and r.output.startswith("Error:"), r.output
        assert "Traceback" not in r.output


def test_script_runs_from_checkout_and_group_lists_commands(tmp_path):
    ckpt = tiny_ckpt(tmp_path)
    p = subprocess.run([sys.executable, str(REPO / "stylegan2/generate.py"), "--ckpt", str(ckpt), "--seeds", "0-1",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "o/grid.png").exists()
    p = subprocess.run([sys.executable, str(REPO / "stylegan2/generate.py"), "--ckpt", str(tmp_path / "nope.pt")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "checkpoint not found" in p.stderr
    r = CliRunner().invoke(toonlab_main, ["--help"])
    assert r.exit_code == 0 and "generate" in r.output
    r = CliRunner().invoke(toonlab_main, ["generate", "--ckpt", str(ckpt), "--seeds", "1", "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
