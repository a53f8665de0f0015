"""NVIDIA stylegan2-ada-pytorch pickles: read as data, mapped to our networks, hostile files refused.

The fixture was written by NVIDIA's own training-loop code (random weights, 32 px, source text
blanked) and its expected outputs computed by NVIDIA's networks on CPU — see docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from stylegan2.checkpoint import CheckpointError, load_checkpoint, load_discriminator, load_generator
from stylegan2.nvidia import NVIDIA_FORMAT, Record, apply_conv_clamp, read_pickle
from tests import nvidia_pickles as nv

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4  # measured: ≤ 2e-6 on images in [-3, 4], ≤ 1e-7 on D logits


@pytest.fixture(scope="module")
def expected():
    return torch.load(nv.EXPECTED, weights_only=True)


def _render(G, z, psi=1.0, noise_mode="const"):
    with torch.no_grad():
        return G.synthesis(G.mapping(z, truncation=psi), noise_mode=noise_mode).image


def test_fixture_renders_what_nvidia_rendered(expected):
    G = load_generator(nv.FIXTURE)
    assert G.size == 32 and G.style_dim == 16 and len(G.style) == 3  # PixelNorm + 2 mapping layers
    assert G.channels == {4: 16, 8: 8, 16: 4, 32: 2}
    assert G.w_avg_known
    torch.testing.assert_close(G.w_avg, expected["w_avg"], rtol=0, atol=0)
    z = expected["z"]
    for psi, mode, key in ((1.0, "const", "img_psi1"), (0.7, "const", "img_psi07"), (0.7, "none", "img_none")):
        diff = (_render(G, z, psi, mode) - expected[key]).abs().max().item()
        assert diff < TOL, (key, diff)
    G_train = load_generator(nv.FIXTURE, "g")
    assert (_render(G_train, z) - expected["img_g"]).abs().max().item() < TOL
    D = load_discriminator(nv.FIXTURE).eval()
    assert D.stddev_group == 2
    with torch.no_grad():
        logits = D(torch.cat([expected["img_psi1"], expected["d_noise"]]))
    assert (logits - expected["d_logits"]).abs().max().item() < TOL


def test_conv_clamp_is_applied_and_matters_here(expected):
    """The fixture's clamp (1.5) binds, so a loader that dropped it would fail the test above."""
    G = load_generator(nv.FIXTURE)
    assert G.conv_clamp == 1.5
    apply_conv_clamp(G, None)
    assert (_render(G, expected["z"]) - expected["img_psi1"]).abs().max().item() > 0.5
    apply_conv_clamp(G, 1.5)
    apply_conv_clamp(G, 1.5)  # idempotent: hooks are replaced, not stacked
    assert (_render(G, expected["z"]) - expected["img_psi1"]).abs().max().item() < TOL


def test_fixture_carries_no_nvidia_source_text():
    for fixture in (nv.FIXTURE, nv.TF_FIXTURE):
        blob = fixture.read_bytes()
        for needle in (b"NVIDIA", b"Source Code License", b"import torch", b"import tensorflow", b"def forward",
                       b"def G_main"):
            assert needle not in blob, (fixture.name, needle)
    data = read_pickle(nv.FIXTURE)
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert isinstance(data["G_ema"], Record) and data["G_ema"].kind == "persistent"


def test_format_is_sniffed_by_content_not_name(tmp_path, expected):
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(nv.FIXTURE.read_bytes())
    ckpt = load_checkpoint(renamed)
    assert ckpt["toonlab"]["source"]["format"] == NVIDIA_FORMAT
    assert {"g_ema", "g", "d", "latent_avg"} <= set(ckpt)
    assert (_render(load_generator(renamed), expected["z"]) - expected["img_psi1"]).abs().max() < TOL
    # ...and a community torch file named .pkl is still a torch file.
    from stylegan2.checkpoint import snapshot
    from stylegan2.networks import Generator
    from toonlab.atomic import torch_save_atomic

    torch.manual_seed(0)
    path = torch_save_atomic(snapshot(Generator(16, style_dim=16, n_mlp=2, channel_max=16, channel_base=128)),
                       tmp_path / "community.pkl")
    assert load_generator(path).size == 16


def test_embedded_source_text_is_never_executed(tmp_path, expected):
    """NVIDIA's loader exec()s each record's module_src; ours ignores it."""
    marker = tmp_path / "executed"
    src = f"open({str(marker)!r}, 'w').write('ran')\n"
    path = nv.write(tmp_path / "src.pkl", nv.fixture_records(), module_src=src)
    assert src.encode() in path.read_bytes()
    G = load_generator(path)
    assert not marker.exists()
    assert (_render(G, expected["z"]) - expected["img_psi1"]).abs().max() < TOL


class _System:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def test_os_system_pickle_runs_nothing_and_exits_2(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "network-snapshot-000100.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"G_ema": _System(f"touch {marker}")}, f)
    p = subprocess.run([sys.executable, str(REPO / "stylegan2/generate.py"), "--ckpt", str(evil), "--seeds", "0",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert "system" in p.stderr and "nothing in it was run" in p.stderr
    assert not marker.exists()
    # Control: the same file *does* run its command under a plain pickle.load.
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(evil)!r}, 'rb'))"], check=True)
    assert marker.exists()


def test_hostile_global_inside_a_network_record_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = nv.fixture_records()
    data["G_ema"].state["_init_kwargs"] = {"mapping_kwargs": _System(f"touch {marker}")}
    path = nv.write(tmp_path / "x.pkl", data)
    with pytest.raises(CheckpointError, match=r"posix\.system|os\.system|nt\.system") as e:
        load_generator(path)
    assert "\n" not in str(e.value) and not marker.exists()
    with open(path, "wb") as f:
        pickle.dump({"G_ema": eval}, f)  # a bare reference to builtins.eval
    with pytest.raises(CheckpointError, match=r"builtins\.eval"):
        load_checkpoint(path)


def _edit(tmp_path, name, fn):
    data = nv.fixture_records()
    fn(data)
    return nv.write(tmp_path / f"{name}.pkl", data)


def _add_embed(d):
    d["G_ema"].sub("mapping").state["c_dim"] = 10
    d["G_ema"].sub("mapping").state["_modules"]["embed"] = Record("FullyConnectedLayer", "persistent", {})


def _sg3(d):
    d["G_ema"].sub("synthesis").state["_modules"]["input"] = Record("SynthesisInput", "persistent", {})


@pytest.mark.parametrize(
    "name, edit, message",
    [
        ("conditional", _add_embed, r"conditional generator \(c_dim=10, class embedding\).*cannot represent"),
        ("stylegan3", _sg3, r"StyleGAN3"),
        ("resnet_g", lambda d: d["G_ema"].sub("synthesis").sub("b8").state.update(architecture="resnet"),
         r"architecture 'resnet'"),
        ("orig_g", lambda d: d["G_ema"].sub("synthesis").sub("b16").state.update(architecture="orig"),
         r"architecture 'orig'"),
        ("relu", lambda d: d["G_ema"].sub("mapping").sub("fc1").state.update(activation="relu"), r"'relu'"),
    ],
)
def test_unsupported_generators_are_one_line(tmp_path, name, edit, message):
    path = _edit(tmp_path, name, edit)
    with pytest.raises(CheckpointError, match=message) as e:
        load_generator(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["D"].sub("b4").sub("mbstd").state.update(num_channels=2), r"minibatch-stddev with 2 channels"),
        (lambda d: d["D"].sub("b32").state.update(architecture="skip"), r"architecture 'skip'"),
        (lambda d: d["D"].state.update(c_dim=3), r"conditional discriminator"),
    ],
)
def test_unsupported_discriminator_still_renders_but_d_says_why(tmp_path, edit, message, expected):
    path = _edit(tmp_path, "d", edit)
    G = load_generator(path)  # generating needs no D
    assert (_render(G, expected["z"]) - expected["img_psi1"]).abs().max() < TOL
    with pytest.raises(CheckpointError, match=message):
        load_discriminator(path)


def test_mbstd_group_none_means_whole_batch(tmp_path):
    path = _edit(tmp_path, "g", lambda d: d["D"].sub("b4").sub("mbstd").state.update(group_size=None))
    D = load_discriminator(path)
    assert D.stddev_group >= 1 << 20


def test_bad_files_are_one_line(tmp_path):
    blob = nv.FIXTURE.read_bytes()
    (tmp_path / "truncated.pkl").write_bytes(blob[: len(blob) // 2])
    with open(tmp_path / "wrong.pkl", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    tf = tuple(nv.Network({"name": n, "version": 4, "static_kwargs": {}}) for n in ("G", "D", "Gs"))
    nv.write(tmp_path / "tf.pkl", tf)
    nv.write(tmp_path / "tf1.pkl", tuple(nv.Network({"name": n, "version": 3}) for n in ("G", "D", "Gs")))
    cases = {
        "truncated.pkl": r"not a loadable checkpoint: .*(truncated|ends early)",
        "wrong.pkl": r"not a stylegan2-ada-pytorch network pickle \(keys: weights\)",
        "list.pkl": r"not a network pickle",
        "tf.pkl": r"TensorFlow network has no variable 'synthesis/4x4/Const/const'",
        "tf1.pkl": r"TensorFlow pickle older than version 4",
        "missing.pkl": r"checkpoint not found",
    }
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as e:
            load_generator(tmp_path / name)
        assert "\n" not in str(e.value), name


def test_cli_exit_codes(tmp_path):
    from stylegan2.generate import main as generate_main

    path = _edit(tmp_path, "cond", _add_embed)
    sg3 = _edit(tmp_path, "sg3", _sg3)
    (tmp_path / "trunc.pkl").write_bytes(nv.FIXTURE.read_bytes()[:5000])
    with open(tmp_path / "wrong.pkl", "wb") as f:
        pickle.dump({"state_dict": {"a": 1}}, f)
    for ckpt in (path, sg3, tmp_path / "trunc.pkl", tmp_path / "wrong.pkl", tmp_path / "none.pkl"):
        r = CliRunner().invoke(generate_main, ["--ckpt", str(ckpt), "--out", str(tmp_path / "o")])
        assert r.exit_code == 2, r.output
        assert r.output.startswith("Error:") and r.output.strip().count("\n") == 0, r.output
    r = CliRunner().invoke(generate_main, ["--ckpt", str(nv.FIXTURE), "--seeds", "0-3", "--truncation", "0.7",
                                           "--out", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "ok").glob("seed*.png"))) == 4


def test_export_to_community_pt_and_safetensors(tmp_path, expected):
    from stylegan2.export import main as export_main
    from stylegan2.networks import Discriminator, Generator

    for name in ("ffhq.pt", "ffhq.safetensors"):
        r = CliRunner().invoke(export_main, ["--ckpt", str(nv.FIXTURE), "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        assert "--n_mlp 2" in r.output
        G = load_generator(tmp_path / name)
        assert (_render(G, expected["z"]) - expected["img_psi1"]).abs().max() < TOL  # clamp kept in the config
        D = load_discriminator(tmp_path / name).eval()
        with torch.no_grad():
            logits = D(torch.cat([expected["img_psi1"], expected["d_noise"]]))
        assert (logits - expected["d_logits"]).abs().max() < TOL
    # The .pt is plain community layout: weights_only torch.load, strict load into fresh networks.
    ckpt = torch.load(tmp_path / "ffhq.pt", weights_only=True)
    assert {"g_ema", "g", "d", "latent_avg"} <= set(ckpt)
    cfg = ckpt["toonlab"]["g_config"]
    Generator(**cfg).load_state_dict(ckpt["g_ema"], strict=True)
    Discriminator(**ckpt["toonlab"]["d_config"]).load_state_dict(ckpt["d"], strict=True)
    torch.testing.assert_close(ckpt["latent_avg"], expected["w_avg"], rtol=0, atol=0)
    r = CliRunner().invoke(export_main, ["--ckpt", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "checkpoint not found" in r.output


def test_finetune_starts_from_an_nvidia_pickle_with_freeze_d(tmp_path):
    """FreezeD needs the pickle's D: the trainer's D is NVIDIA's, frozen blocks stay put."""
    from finetune.freeze import FreezeSpec
    from finetune.trainer import FinetuneConfig, FinetuneTrainer

    cfg = FinetuneConfig(source=str(nv.FIXTURE), out=str(tmp_path / "run"), batch=4, workers=0, snapshot_every=0,
                         sample_every=0, log_every=1, d_reg_every=2, n_samples=4, freeze=2, freeze_d=2, iters=2)
    t = FinetuneTrainer(cfg, None, torch.device("cpu"))
    ref_d = load_discriminator(nv.FIXTURE)
    assert all(torch.equal(a, b) for a, b in zip(t.D.state_dict().values(), ref_d.state_dict().values()))
    # The pickle's conv_clamp holds for the fine-tuned networks as for the loaded ones.
    assert t.D.conv_clamp == ref_d.conv_clamp is not None and t.G.conv_clamp == t.G_ema.conv_clamp == 1.5
    frozen = FreezeSpec(freeze_d=2).discriminator_frozen(t.D)
    before = {n: p.detach().clone() for n, p in t.D.named_parameters()}
    g = torch.Generator().manual_seed(0)
    t.train(iter([torch.rand(4, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2)]))
    assert all(torch.equal(p, before[n]) for n, p in t.D.named_parameters() if n in frozen)
    assert any(not torch.equal(p, before[n]) for n, p in t.D.named_parameters() if n not in frozen)
    path = t.save()
    assert load_checkpoint(path)["toonlab"]["conv_clamp"]["g"] == 1.5
    assert load_generator(path).conv_clamp == 1.5


def test_tensorflow_pickle_renders_what_nvidias_legacy_conversion_renders():
    """A (G, D, Gs) TF-era pickle (numpy variables, TF names), read directly; expected outputs are
    those of NVIDIA's legacy.py conversion of the same file, run on their networks (BENCHMARKS.md)."""
    exp = torch.load(nv.TF_EXPECTED, weights_only=True)
    ckpt = load_checkpoint(nv.TF_FIXTURE)
    assert ckpt["toonlab"]["source"]["format"] == "nvidia-stylegan2-tensorflow"
    G, G_train, D = load_generator(nv.TF_FIXTURE), load_generator(nv.TF_FIXTURE, "g"), load_discriminator(nv.TF_FIXTURE)
    assert G.size == 16 and G.style_dim == 8 and D.stddev_group == 4
    z = exp["z"]
    assert (_render(G, z) - exp["img_psi1"]).abs().max() < TOL
    assert (_render(G, z, 0.7) - exp["img_psi07"]).abs().max() < TOL
    assert (_render(G_train, z) - exp["img_g"]).abs().max() < TOL
    x = torch.cat([exp["img_psi1"], exp["d_noise"]])[: len(exp["d_logits"])]
    with torch.no_grad():
        assert (D.eval()(x) - exp["d_logits"]).abs().max() < TOL


def _tf_edit(tmp_path, fn):
    data = read_pickle(nv.TF_FIXTURE)
    fn(data)
    return nv.write(tmp_path / "tf_edit.pkl", nv.tf_networks(data))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d[2].state["static_kwargs"].update(fused_modconv=True), r"TensorFlow network with setting 'fused_modconv'"),
        (lambda d: d[2].state["static_kwargs"].update(label_size=5), r"conditional generator \(c_dim=5"),
        (lambda d: d[2].state["components"]["synthesis"].state["variables"].append(
            ("ToRGB_lod0/weight", torch.zeros(1, 1, 8, 3))), r"architecture 'orig'"),
    ],
)
def test_tensorflow_pickles_we_cannot_represent(tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=message) as e:
        load_generator(_tf_edit(tmp_path, edit))
    assert "\n" not in str(e.value)


def test_conv_clamp_survives_copies(expected):
    """A deep copy (EMA, fine-tuning) clamps with its own weights, not the original's."""
    import copy

    G = load_generator(nv.FIXTURE)
    G2 = copy.deepcopy(G)
    assert (_render(G2, expected["z"]) - expected["img_psi1"]).abs().max() < TOL
    with torch.no_grad():
        for p in G2.parameters():
            p.mul_(1.01)
    G3 = copy.deepcopy(G2)
    apply_conv_clamp(G3, None)
    apply_conv_clamp(G3, 1.5)  # fresh hooks on G3 itself: the reference for G2's copied ones
    torch.testing.assert_close(_render(G2, expected["z"]), _render(G3, expected["z"]))
