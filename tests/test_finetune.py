"""Fine-tuning: freeze selections, structure loss, the source really loaded, a short run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from finetune.freeze import FreezeSpec
from finetune.trainer import FinetuneConfig, FinetuneTrainer
from losses import structure_loss
from stylegan2.blocks import generator_block_of
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
    # FreezeSG freezes blocks 1..N; the target's mapping network trains (for the later style entries).
    sg = FreezeSpec(freeze_sg=2).generator_frozen(G)
    assert sg == blocks[1] | blocks[2]
    # With the mapping frozen as well it is the selection FreezeSG had before issue 11.
    assert FreezeSpec(freeze_sg=2, freeze_mapping=True).generator_frozen(G) == blocks[None] | blocks[1] | blocks[2]
    fg = FreezeSpec(freeze_g=2).generator_frozen(G)
    assert fg == blocks[None] | blocks[1] | blocks[2] | blocks[3]
    assert FreezeSpec(freeze_mapping=True).generator_frozen(G) == blocks[None]
    assert FreezeSpec().generator_frozen(G) == set()
    # The published mode's --freezeG M: the same selection as FreezeG (train.py:264-306).
    assert FreezeSpec(freeze_g=2, freeze_style=4, mode="published").generator_frozen(G) == fg
    assert FreezeSpec(freeze_style=4, mode="published").generator_frozen(G) == set()
    fd = FreezeSpec(freeze_d=2).discriminator_frozen(D)
    assert {n.split(".")[1] for n in fd} == {"0", "1", "2"}  # FromRGB + the two highest-res ResBlocks
    assert not any(n.startswith("final") for n in fd)
    with pytest.raises(ValueError, match="blocks 1..5"):
        FreezeSpec(freeze_sg=6).validate(G)
    with pytest.raises(ValueError, match="W\\+ entries"):
        FreezeSpec(freeze_sg=1, freeze_style=11).validate(G)
    with pytest.raises(ValueError, match="published has no --freeze N"):
        FreezeSpec(freeze_sg=2, mode="published").validate(G)


def test_style_entry_map_matches_the_synthesis_network():
    """block 1 reads W+ 0,1; block k ≥ 2 reads 2k-3, 2k-2, 2k-1 — checked by perturbing one entry."""
    from finetune.freeze import block_style_entries

    torch.manual_seed(0)
    G = Generator(32, style_dim=16, n_mlp=2, channel_max=16, channel_base=256).eval()  # 4 blocks, 8 entries
    w = G.broadcast(G.mapping(torch.randn(1, 16)))
    noise = G.make_noise(1)
    base = G.synthesis(w, noise=noise, return_features=True, return_rgbs=True)
    for i in range(G.n_latent):
        w2 = w.clone()
        w2[:, i] += 1.0
        out = G.synthesis(w2, noise=noise, return_features=True, return_rgbs=True)
        # The first block whose output changes is the first block reading entry i.
        first = next(b for b in range(1, G.n_blocks + 1)
                     if not torch.equal(out.features[b - 1], base.features[b - 1])
                     or not torch.equal(out.rgbs[b - 1], base.rgbs[b - 1]))
        assert i in G.block_latent_indices(first), (i, first)
        assert all(i not in G.block_latent_indices(b) for b in range(1, first))
    assert G.block_latent_indices(1) == [0, 1] and G.block_latent_indices(3) == [3, 4, 5]
    assert [block_style_entries(n) for n in range(4)] == [0, 2, 4, 6]  # entries of blocks 1..N = 0..2N-1


def _maps(seed: int = 0):
    torch.manual_seed(seed)
    return [Generator(64, style_dim=16, n_mlp=2, channel_max=16, channel_base=256) for _ in range(2)]


def test_freezesg_and_freezeg_select_different_things():
    """Issue 11: FreezeSG N is not FreezeG n_blocks−N renumbered — not in parameters, not in the forward."""
    src, tgt = _maps()
    tgt.load_state_dict(src.state_dict())
    for n in range(1, tgt.n_blocks):
        sg, fg = FreezeSpec(freeze_sg=n), FreezeSpec(freeze_g=tgt.n_blocks - n)
        assert sg.generator_frozen(tgt) != fg.generator_frozen(tgt)
        assert not any(p.startswith("style.") for p in sg.generator_frozen(tgt))  # the target's mapping trains
        assert all(p in fg.generator_frozen(tgt) for p, _ in tgt.style.named_parameters(prefix="style"))
    # Perturb the target's mapping network (what training does to it under FreezeSG).
    with torch.no_grad():
        for p in tgt.style.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = torch.randn(2, 3, 16)
    w_t = tgt.style(z.reshape(6, 16)).reshape(2, 3, 16)
    w_s = src.style(z.reshape(6, 16)).reshape(2, 3, 16)
    n = tgt.n_latent  # 10
    for cut in (n, 3, 7):  # no mixing, and two style-mixing crossovers
        sg = FreezeSpec(freeze_sg=2).style_latents(w_t, w_s, cut, n)  # K = 4 source entries
        fg = FreezeSpec(freeze_g=3).style_latents(w_t, w_s, cut, n)
        for i in range(n):
            which = 0 if i < cut else 1
            assert torch.equal(sg[:, i], (w_s if i < 4 else w_t)[which]), (cut, i)
            assert torch.equal(fg[:, i], w_t[which]), (cut, i)
        assert not torch.equal(sg, fg)
    # An explicit --freeze-style K overrides the 2N default.
    k6 = FreezeSpec(freeze_sg=2, freeze_style=6).style_latents(w_t, w_s, n, n)
    assert torch.equal(k6[:, :6], w_s[0].unsqueeze(1).expand(-1, 6, -1))
    assert torch.equal(k6[:, 6:], w_t[0].unsqueeze(1).expand(-1, 4, -1))


def _published_put_latent(w_t: torch.Tensor, w_s: torch.Tensor, cut: int, k: int | None, n: int) -> torch.Tensor:
    """Re-statement of Cartoon-StyleGAN model.py:545-575 with train.py:228-230/329-331's call:
    the source's return_latents (its own mix at ``cut``), then generator(noise, inject_index=K, put_latent)."""
    if cut >= n:  # one style: latent = styles[0] repeated, put_latent unused
        return w_t[0].unsqueeze(1).repeat(1, n, 1)
    src_latent = torch.cat([w_s[0].unsqueeze(1).repeat(1, cut, 1), w_s[1].unsqueeze(1).repeat(1, n - cut, 1)], 1)
    if k is None:  # --freezeStyle -1: plain mixing
        return torch.cat([w_t[0].unsqueeze(1).repeat(1, cut, 1), w_t[1].unsqueeze(1).repeat(1, n - cut, 1)], 1)
    return torch.cat([src_latent[:, :k], w_t[0].unsqueeze(1).repeat(1, n - k, 1)], 1)


def test_published_mode_reproduces_put_latent():
    src, tgt = _maps(1)
    z = torch.randn(2, 4, 16)
    w_t = tgt.style(z.reshape(8, 16)).reshape(2, 4, 16)
    w_s = src.style(z.reshape(8, 16)).reshape(2, 4, 16)
    n = tgt.n_latent
    for k in (None, 0, 2, 4, n):
        spec = FreezeSpec(freeze_g=3, freeze_style=k, mode="published")
        for cut in (n, 1, 5, n - 1):
            got = spec.style_latents(w_t, w_s, cut, n)
            torch.testing.assert_close(got, _published_put_latent(w_t, w_s, cut, k, n), rtol=0, atol=0)
    # Only mixing batches are affected; on those K = 0 removes mixing (the published code's quirk).
    spec = FreezeSpec(freeze_style=2, mode="published")
    assert torch.equal(spec.style_latents(w_t, w_s, n, n), w_t[0].unsqueeze(1).expand(-1, n, -1))
    no_mix = FreezeSpec(freeze_style=0, mode="published").style_latents(w_t, w_s, 3, n)
    assert torch.equal(no_mix, w_t[0].unsqueeze(1).expand(-1, n, -1))


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


@pytest.mark.parametrize("method", [dict(freeze=2), dict(freeze_g=2), dict(), dict(freeze_g=2, freeze_style=3,
                                                                                    freeze_mode="published")])
def test_target_starts_as_the_source_and_structure_loss_is_exactly_zero(tmp_path, method):
    """Issue 11 item 2: G and G_ema start from the weights the source renders with (g_ema, not g)."""
    ck = load_checkpoint(source_ckpt(tmp_path))
    assert not torch.equal(ck["g"]["conv1.conv.weight"], ck["g_ema"]["conv1.conv.weight"])
    for on in ("rgb", "features"):
        t = make_trainer(tmp_path, structure_loss=2, structure_on=on, **method)
        for name, sd in (("G", t.G.state_dict()), ("G_ema", t.G_ema.state_dict())):
            for k, v in ck["g_ema"].items():
                assert torch.equal(sd[k], v), (name, k)
        z = torch.randn(3, 16)
        with torch.no_grad():  # target ≡ source: same image for the same z, through each one's own mapping
            a, _ = t.G_ema([z], noise_mode="const")
            b, _ = t.source([z], noise_mode="const")
        assert torch.equal(a, b)
        # The G step's own latents, noise and forward: the structure loss is exactly 0 at step 0.
        for _ in range(4):  # mixing and non-mixing batches
            w = t.sample_latents(2)
            noise = t.G.make_noise(2)
            out = t.G.synthesis(w, noise=noise, **t.synthesis_kwargs())
            assert t.extra_g_loss(w, noise, out)["structure"].item() == 0.0


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
    # FreezeSG: the target's mapping network trained, yet its first 2N = 4 style vectors are exactly
    # the source's, on every batch (mixing included), in training and in the EMA model it renders.
    assert any(not torch.equal(p, before_g[n]) for n, p in t.G.named_parameters() if n.startswith("style."))
    z = torch.randn(5, 16)
    assert not torch.equal(t.G.mapping(z), t.source.mapping(z))
    wplus = t.G_ema.mapping(z)
    assert torch.equal(wplus[:, :4], t.source.mapping(z).unsqueeze(1).expand(-1, 4, -1))
    for _ in range(6):
        w = t.sample_latents(3)
        assert torch.equal(w[:, :4], t._source_latent[:, :4])
        assert not torch.equal(w[:, 4:], t._source_latent[:, 4:])
    stats = [json.loads(line) for line in (tmp_path / "run/stats.jsonl").read_text().splitlines()]
    assert all("loss/structure" in s for s in stats)


def test_structure_loss_is_zero_at_start_with_shared_noise(tmp_path):
    t = make_trainer(tmp_path, structure_loss=2)
    w = t.sample_latents(2)
    noise = t.G.make_noise(2)
    out = t.G.synthesis(w, noise=noise, **t.synthesis_kwargs())
    assert t.extra_g_loss(w, noise, out)["structure"].item() == 0
    # A target that differs from the source in conv1 (block 1): block outputs differ → positive.
    with torch.no_grad():
        t.G.conv1.conv.weight.add_(0.5)
    out = t.G.synthesis(w, noise=noise, **t.synthesis_kwargs())
    assert t.extra_g_loss(w, noise, out)["structure"].item() > 0
    out = t.source.synthesis(w, noise=noise, **t.synthesis_kwargs())
    assert t.extra_g_loss(w, noise, out)["structure"].item() == 0


def _published_block_features(G: Generator, w: torch.Tensor, noise: list, swap_layer_num: int) -> torch.Tensor:
    """Re-statement of Cartoon-StyleGAN model.py:577-613 with swap=True: the loop variable i starts at 1
    and grows by 2 per (conv1, conv2, to_rgb) group; ``save_swap_layer`` is ``out`` after conv2 when
    i == 2·swap_layer_num − 1. Built from the layers, not from Generator.synthesis."""
    out = G.conv1(G.input(w.shape[0]), w[:, 0], noise[0])
    i = 1
    for conv1, conv2, n1, n2 in zip(G.convs[::2], G.convs[1::2], noise[1::2], noise[2::2]):
        out = conv1(out, w[:, i], n1)
        out = conv2(out, w[:, i + 1], n2)
        if i == 2 * swap_layer_num - 1:
            return out
        i += 2
    raise ValueError(swap_layer_num)


def test_features_structure_loss_is_the_published_formula(tmp_path):
    """train.py:344-348: g_loss += Σ_{layer<N} mse(tar_feat(swap_layer_num=layer+1), src_feat(...))."""
    t = make_trainer(tmp_path, structure_loss=2, structure_on="features")
    with torch.no_grad():  # a target that has moved away from the source in every block
        for p in t.G.parameters():
            p.add_(0.05 * torch.randn_like(p))
    w = t.sample_latents(3)
    noise = t.G.make_noise(3)
    out = t.G.synthesis(w, noise=noise, **t.synthesis_kwargs())
    got = t.extra_g_loss(w, noise, out)["structure"]
    with torch.no_grad():
        ref = sum(torch.nn.functional.mse_loss(_published_block_features(t.G, w, noise, layer + 1),
                                               _published_block_features(t.source, t._source_latent, noise, layer + 1))
                  for layer in range(2))
    assert ref > 0
    torch.testing.assert_close(got, ref)
    # swap_layer_num k is our block k+1 (8 px for k = 1), and the features mode uses 8 and 16 px here.
    assert _published_block_features(t.G, w, noise, 1).shape[-1] == 8 == out.features[1].shape[-1]
    assert t.cfg.structure_blocks() == [2, 3]
    # rgb (the paper's) stays the mean over blocks 1..N of the skip-RGB MSE.
    t2 = make_trainer(tmp_path, structure_loss=2, structure_on="rgb")
    t2.G.load_state_dict(t.G.state_dict())
    w2 = t2.sample_latents(3)
    out2 = t2.G.synthesis(w2, noise=noise, return_rgbs=True)
    src2 = t2.source.synthesis(t2._source_latent, noise=noise, return_rgbs=True)
    ref2 = sum(torch.nn.functional.mse_loss(out2.rgbs[b], src2.rgbs[b]) for b in range(2)) / 2
    torch.testing.assert_close(t2.extra_g_loss(w2, noise, out2)["structure"], ref2)
    with pytest.raises(ValueError, match="allows 1..3"):
        make_trainer(tmp_path, structure_loss=4, structure_on="features")


def test_freezesg_checkpoint_renders_with_both_mapping_networks(tmp_path):
    from stylegan2.networks import SplitMappingGenerator

    t = make_trainer(tmp_path, freeze=1, iters=1)
    last = t.train(iter([torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1]))
    ck = load_checkpoint(last)
    # The community part of the file is unchanged: a plain Generator loads g_ema strictly.
    plain = Generator(**ck["toonlab"]["g_config"])
    plain.load_state_dict(ck["g_ema"], strict=True)
    G = load_generator(last)
    assert isinstance(G, SplitMappingGenerator) and G.n_early == 2
    z = torch.randn(4, 16)
    with torch.no_grad():
        w = G.mapping(z)
        assert torch.equal(w[:, :2], t.source.mapping(z).unsqueeze(1).expand(-1, 2, -1))
        assert torch.equal(w[:, 2:], plain.mapping(z).unsqueeze(1).expand(-1, G.n_latent - 2, -1))
        img, _ = G([z], noise_mode="const")
        torch.testing.assert_close(img, G.synthesis(w, noise_mode="const").image)
        # Truncation pulls each part toward its own network's mean w.
        wt = G.mapping(z, truncation=0.5)
        src_avg = t.source.mean_w()
        torch.testing.assert_close(wt[:, 0], src_avg + 0.5 * (t.source.mapping(z) - src_avg))
    # Moving it moves the hidden network too.
    assert G.to(torch.float64).early_style[1].weight.dtype == torch.float64
    # A slim export keeps the second mapping network.
    from stylegan2.export import export_snapshot

    slim = load_generator(export_snapshot(last, tmp_path / "slim.pt"))
    assert isinstance(slim, SplitMappingGenerator)
    with torch.no_grad():
        torch.testing.assert_close(slim.mapping(z), w)
    # ...and so does a float16 one (the bundled files' form), its early mapping in float16 too.
    half_file = export_snapshot(last, tmp_path / "half.pt", half=True)
    early = load_checkpoint(half_file)["toonlab"]["early_mapping"]
    assert all(v.dtype == torch.float16 for v in early["state"].values() if v.is_floating_point())
    half = load_generator(half_file)
    assert isinstance(half, SplitMappingGenerator) and half.early_style[1].weight.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(half.mapping(z), w, rtol=2e-2, atol=2e-2)


def test_path_length_runs_with_a_frozen_mapping_network(tmp_path):
    t = make_trainer(tmp_path, freeze_g=2, path_regularize=2.0, g_reg_every=1, iters=1)
    t.train(iter([torch.rand(4, 3, 32, 32) * 2 - 1]))
    assert t.mean_path_length.item() > 0


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
    for bad in (["--target", "nosuch"], ["--freeze", "9"], ["--ckpt", str(tmp_path / "none.pt")],
                ["--freeze", "2", "--freeze-mode", "published"], ["--freeze-style", "99"], ["--freeze-style"]):
        r = CliRunner().invoke(main, ["--ckpt", str(src), "--iters", "1", "--out", str(tmp_path / "b"), *bad])
        assert r.exit_code == 2 and "Traceback" not in r.output, (bad, r.output)


def test_freezesg_safetensors_export_keeps_the_second_mapping_network(tmp_path):
    """safetensors cannot hold tensors in its JSON metadata: the early mapping travels as tensors."""
    from stylegan2.export import export_snapshot
    from stylegan2.networks import SplitMappingGenerator

    t = make_trainer(tmp_path, freeze=1, iters=1)
    last = t.train(iter([torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1]))
    G = load_generator(export_snapshot(last, tmp_path / "slim.pt"))  # the same slim export as .pt
    st = load_generator(export_snapshot(last, tmp_path / "slim.safetensors"))
    assert isinstance(st, SplitMappingGenerator) and st.n_early == G.n_early
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(st.mapping(z), G.mapping(z))
        torch.testing.assert_close(st.mapping(z, truncation=0.5), G.mapping(z, truncation=0.5))


@pytest.mark.parametrize("mode", ["paper", "published"])
def test_bf16_fine_tuning_step_with_structure_loss_runs(tmp_path, mode):
    """Issue 17's fine-tuning row (--precision bf16 --freeze 2 --structure-loss 3): the latent comes
    out of the G pass's autocast in bf16 and the source pass must run under the same autocast
    (it raised "mat1 and mat2 must have the same dtype" before)."""
    freeze = dict(freeze=2) if mode == "paper" else dict(freeze_g=2)  # published mode selects with --freeze-g
    t = make_trainer(tmp_path, structure_loss=2, precision="bf16", freeze_mode=mode, **freeze)
    t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    w = t.sample_latents(2).to(torch.bfloat16)
    noise = t.G.make_noise(2)
    out = t.G.synthesis(w.float(), noise=noise, **t.synthesis_kwargs())
    loss = t.extra_g_loss(w, noise, out)["structure"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
