"""One command-line vocabulary: every command is reachable from `toonlab`, shows its defaults, speaks
the README's flags, and still understands the old spellings (one warning line each)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from toonlab.cli import COMMANDS, load_command
from toonlab.cli import main as toonlab_main
from toonlab.options import VOCABULARY, rewrite_aliases

REPO = Path(__file__).resolve().parents[1]


def _commands():
    for name in sorted(COMMANDS):
        cmd = load_command(name)
        if isinstance(cmd, click.Group):
            for sub, c in cmd.commands.items():
                yield f"{name} {sub}", c
        else:
            yield name, cmd


def test_toonlab_help_lists_every_command():
    r = CliRunner().invoke(toonlab_main, ["--help"])
    assert r.exit_code == 0
    listed = re.findall(r"^  (\S+)\s", r.output.split("Commands:")[1], re.M)
    assert listed == sorted(COMMANDS)


@pytest.mark.parametrize("name,cmd", list(_commands()), ids=[n for n, _ in _commands()])
def test_every_option_shows_its_default(name, cmd):
    ctx = click.Context(cmd, info_name=name, **cmd.context_settings)
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden or p.is_flag or p.required or p.multiple or p.name == "help":
            continue
        record = p.get_help_record(ctx)
        assert record is not None
        default = p.get_default(ctx, call=False)
        if default not in (None, (), []) or p.show_default not in (None, False, True):
            assert "default:" in record[1], f"{name} {p.opts}: {record[1]!r}"


def test_no_command_uses_an_old_spelling():
    old = {"--iter", "--outdir", "--out-root", "--img-size", "--json-out", "--vgg", "--vgg-weights", "--lpips",
           "--perceptual-weights", "--metrics-features", "--resume", "--steps"}
    for name, cmd in _commands():
        flags = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        assert not flags & old, (name, flags & old)
    # --target means a domain; the layer-swap command names its second model --cartoon.
    fl = {o for p in load_command("swap").params for o in getattr(p, "opts", [])}
    assert "--target" not in fl and {"--source", "--cartoon"} <= fl


def test_the_readme_table_lists_the_vocabulary():
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Command-line vocabulary")[1].split("\n## ")[0]
    for flag in VOCABULARY:
        assert f"`{flag}" in table, flag


def test_rewrite_aliases():
    al = {"--iter": "--iters", "--vgg=random": "--features=random", "--out=*.md": "--report"}
    assert rewrite_aliases(["--iter", "5", "--vgg", "random", "--out", "a.md"], al) == \
        ["--iters", "5", "--features", "random", "--report", "a.md"]
    assert rewrite_aliases(["--iter=5", "--vgg=imagenet", "--out", "runs/x"], al) == \
        ["--iters=5", "--vgg=imagenet", "--out", "runs/x"]
    assert rewrite_aliases(["a.pt", "b.pt", "--no-d"], {}, positional=("--ckpt", "--out")) == \
        ["--ckpt", "a.pt", "--out", "b.pt", "--no-d"]


def test_old_spellings_still_work_with_one_warning_line():
    runner = CliRunner()
    r = runner.invoke(load_command("train"), ["synthetic:photo", "--iter", "7", "--metrics-features", "random",
                                              "--metrics", "fid1k", "--resume", "x.pt", "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output[r.output.index("{"):])
    assert cfg["iters"] == 7 and cfg["metrics_features"] == "random" and cfg["resume"] == "x.pt"
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: --iter is deprecated; use --iters",
                        "warning: --metrics-features is deprecated; use --features",
                        "warning: --resume is deprecated; use --ckpt"]
    r = runner.invoke(load_command("translate-train"), ["--vgg", "random", "--features", "vgg19", "--iters", "2",
                                                        "--init-iters", "1", "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output[r.output.index("{"):])
    assert cfg["vgg"] == "random" and cfg["features"] == "vgg19"
    assert "warning: --features vgg19 is deprecated; use --feature-net vgg19" in r.output
    r = runner.invoke(load_command("stargan2"), ["train", "--img-size", "64", "--dry-run"])
    assert r.exit_code == 0 and json.loads(r.output[r.output.index("{"):])["img_size"] == 64, r.output
    r = runner.invoke(load_command("finetune"), ["--source", "nope.pt", "--iter", "3", "--dry-run"])
    assert r.exit_code == 2 and "nope.pt" in r.output  # --source is --ckpt now; the file is checked


def test_export_accepts_the_old_positional_form(tmp_path):
    import torch

    from stylegan2.checkpoint import snapshot
    from stylegan2.networks import Generator
    from toonlab.atomic import torch_save_atomic

    torch.manual_seed(0)
    G = Generator(16, 16, 2, channel_max=16, channel_base=128)
    torch_save_atomic(snapshot(G), tmp_path / "g.pt")
    r = CliRunner().invoke(load_command("export"), [str(tmp_path / "g.pt"), str(tmp_path / "slim.pt")])
    assert r.exit_code == 0, r.output
    assert "deprecated; use --ckpt" in r.output and (tmp_path / "slim.pt").is_file()
    r = CliRunner().invoke(load_command("export"), ["--ckpt", str(tmp_path / "g.pt"), "--out", str(tmp_path / "b.pt")])
    assert r.exit_code == 0 and "warning" not in r.output
