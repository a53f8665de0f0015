"""Fine-tuning: freeze selections, structure loss, the source really loaded, a short run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from finetune.freeze import FreezeSpec, generator_block_of
from finetune.trainer import FinetuneConfig, FinetuneTrainer
from losses import structure_loss
from stylegan2.checkpoint import load_checkpoint, load_generator, snapshot
from stylegan2.networks import Discriminator, Generator
from tests.conftest import TINY_G, tiny_discriminator, tiny_generator
from toonlab.atomic import torch_save_atomic

REPO = Path(__file__).resolve().parents[1]


def source_ckpt(tmp_path: Path, size: int = 32) -> Path:
    G = tiny_generator(size, perturb="noise", channel_base=256)  # a trained-looking source
    G_train = Generator(size, **{**TINY_G, "channel_base": 256})
    G_train.load_state_dict(G.state_dict())
    with torch.no_grad():
        G_train.conv1.conv.weight.add_(0.5)  # g differs from g_ema, as in a real training checkpoint
    D = tiny_discriminator(size, channel_base=256)
    return torch_save_atomic(snapshot(G, D, G_train=G_train), tmp_path / "source.pt")


def make_trainer(tmp_path: Path, **kw) -> FinetuneTrainer:
    cfg = FinetuneConfig(source=str(source_ckpt(tmp_path)), out=str(tmp_path / "run"), batch=4, workers=0,
                         snapshot_every=0, sample_every=0, log_every=1, d_reg_every=2, n_samples=4, **kw)
    return FinetuneTrainer(cfg, None, torch.device("cpu"))


def names_by_block(G: Generator) -> dict:
    out: dict = {}
    for n, _ in G.named_parameters():
        out.setdefault(generator_block_of(n), set()).add(n)
    return out


def test_block_numbering_matches_reference():
    G = Generator(64, style_dim=16, n_mlp=2, channel_max=16, channel_base=256)
    blocks = names_by_block(G)
    assert {n.split(".")[0] for n in blocks[1]} == {"input", "conv1", "to_rgb1"}
    assert {n.rsplit(".", n.count(".") - 1)[0] for n in blocks[2]} == {"convs.0", "convs.1", "to_rgbs.0"}
    assert {n.rsplit(".", n.count(".") - 1)[0] for n in blocks[5]} == {"convs.6", "convs.7", "to_rgbs.3"}
    assert all(n.startswith("style.") for n in blocks[None])


def test_freeze_selections_touch_exactly_the_documented_parameters():
    G = Generator(64, style_dim=16, n_mlp=2, channel_max=16, channel_base=256)  # 5 blocks
    D = Discriminator(64, channel_max=16, channel_base=256)  # convs.0 + 4 ResBlocks
    blocks = names_by_block(G)
    sg = FreezeSpec(freeze_sg=2).generator_frozen(G)
    assert sg == blocks[None] | blocks[1] | blocks[2]
    fg = FreezeSpec(freeze_g=2).generator_frozen(G)
    assert fg == blocks[None] | blocks[1] | blocks[2] | blocks[3]
    assert FreezeSpec(freeze_style=True).generator_frozen(G) == blocks[None]
    assert FreezeSpec().generator_frozen(G) == set()
    fd = FreezeSpec(freeze_d=2).discriminator_frozen(D)
    assert {n.split(".")[1] for n in fd} == {"0", "1", "2"}  # FromRGB + the two highest-res ResBlocks
    assert not any(n.startswith("final") for n in fd)
    with pytest.raises(ValueError, match="blocks 1..5"):
        FreezeSpec(freeze_sg=6).validate(G)


def test_structure_loss_zero_for_equal_positive_otherwise():
    a = [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8, 8)]
    assert structure_loss(a, [t.clone() for t in a]).item() == 0
    b = [t + 0.1 for t in a]
    torch.testing.assert_close(structure_loss(a, b), torch.tensor(0.01))


def test_source_is_really_loaded_and_frozen(tmp_path):
    t = make_trainer(tmp_path, freeze=2, structure_loss=2)
    ref = load_generator(t.cfg.source)  # the checkpoint's g_ema
    z = torch.randn(3, 16)
    with torch.no_grad():
        a, _ = t.source([z], noise_mode="const")
        b, _ = ref([z], noise_mode="const")
    assert torch.equal(a, b)
    assert not t.source.training and not any(p.requires_grad for p in t.source.parameters())
    # The trainable G starts from the checkpoint's g, G_ema from its g_ema.
    ck = load_checkpoint(t.cfg.source)
    assert torch.equal(t.G.conv1.conv.weight, ck["g"]["conv1.conv.weight"])
    assert torch.equal(t.G_ema.conv1.conv.weight, ck["g_ema"]["conv1.conv.weight"])


def test_frozen_parameters_do_not_change_and_get_no_optimizer_state(tmp_path):
    t = make_trainer(tmp_path, freeze=2, freeze_d=2, structure_loss=3, iters=3)
    frozen_g = FreezeSpec(freeze_sg=2).generator_frozen(t.G)
    frozen_d = FreezeSpec(freeze_d=2).discriminator_frozen(t.D)
    before_g = {n: p.detach().clone() for n, p in t.G.named_parameters()}
    before_d = {n: p.detach().clone() for n, p in t.D.named_parameters()}
    g = torch.Generator().manual_seed(0)
    t.train(iter([torch.rand(4, 3, 32, 32, generator=g) * 2 - 1 for _ in range(3)]))
    for n, p in t.G.named_parameters():
        if n in frozen_g:
            assert torch.equal(p, before_g[n]), n
    assert any(not torch.equal(p, before_g[n]) for n, p in t.G.named_parameters() if n not in frozen_g)
    for n, p in t.D.named_parameters():
        if n in frozen_d:
            assert torch.equal(p, before_d[n]), n
    owned_g = {id(p) for group in t.g_optim.param_groups for p in group["params"]}
    owned_d = {id(p) for group in t.d_optim.param_groups for p in group["params"]}
    for n, p in t.G.named_parameters():
        assert (id(p) in owned_g) == (n not in frozen_g), n
        if n in frozen_g:
            assert p not in t.g_optim.state
    for n, p in t.D.named_parameters():
        assert (id(p) in owned_d) == (n not in frozen_d), n
    # FreezeSG: the target's style vectors are exactly the source's, on every batch.
    z = torch.randn(5, 16)
    assert torch.equal(t.G.mapping(z), t.source.mapping(z))
    stats = [json.loads(line) for line in (tmp_path / "run/stats.jsonl").read_text().splitlines()]
    assert all("loss/structure" in s for s in stats)


def test_structure_loss_is_zero_at_start_with_shared_noise(tmp_path):
    # G (from 'g') differs from the source (g_ema) only in conv1: block outputs differ → positive.
    t = make_trainer(tmp_path, structure_loss=2)
    w = t.sample_latents(2)
    noise = t.G.make_noise(2)
    out = t.G.synthesis(w, noise=noise, **t.synthesis_kwargs())
    assert t.extra_g_loss(w, noise, out)["structure"].item() > 0
    out = t.source.synthesis(w, noise=noise, **t.synthesis_kwargs())
    assert t.extra_g_loss(w, noise, out)["structure"].item() == 0


def test_cli_short_run_end_to_end_and_generate_loads_it(tmp_path):
    from finetune.train import main
    from stylegan2.generate import main as gen_main

    src = source_ckpt(tmp_path)
    out = tmp_path / "ft"
    args = ["--ckpt", str(src), "--target", "webtoon", "--freeze", "2", "--structure-loss", "3", "--iters", "2",
            "--batch", "4", "--workers", "0", "--out", str(out), "--sample-every", "2", "--device", "cpu"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "no --data: fine-tuning on built-in synthetic 'webtoon' faces" in r.output
    ckpt = out / "checkpoints/000002.pt"
    assert ckpt.exists() and (out / "samples/000002.png").exists() and (out / "config.json").exists()
    r = CliRunner().invoke(gen_main, ["--ckpt", str(ckpt), "--seeds", "0-1", "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    # Re-running the same command with more steps resumes.
    r = CliRunner().invoke(main, [*args, "--iters", "3"])  # the last --iters wins
    assert r.exit_code == 0 and "resumed from" in r.output, r.output
    # Bad flags: one line, exit 2.
    for bad in (["--target", "nosuch"], ["--freeze", "9"], ["--ckpt", str(tmp_path / "none.pt")]):
        r = CliRunner().invoke(main, ["--ckpt", str(src), "--iters", "1", "--out", str(tmp_path / "b"), *bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)
