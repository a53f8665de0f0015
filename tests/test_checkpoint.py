"""Checkpoint I/O: community layout round trip, safe loading, one-line errors."""

from __future__ import annotations

import argparse

import pytest
import torch

from stylegan2.checkpoint import infer_generator_config, load_checkpoint, load_discriminator, load_generator, snapshot
from stylegan2.networks import Discriminator, Generator
from tests.conftest import tiny_discriminator, tiny_generator
from toonlab.atomic import torch_save_atomic
from toonlab.checkpoint import CheckpointError


def small_pair(size=16):
    G = tiny_generator(size, n_mlp=3)
    D = tiny_discriminator(size)
    return G, D


def community_file(tmp_path, G, D, **extra):
    """A file shaped like rosinality's train.py output (no toonlab entry)."""
    ckpt = {
        "g": G.state_dict(), "d": D.state_dict(), "g_ema": G.state_dict(),
        "g_optim": torch.optim.Adam(G.parameters()).state_dict(),
        "d_optim": torch.optim.Adam(D.parameters()).state_dict(),
        "args": argparse.Namespace(size=G.size, latent=16, n_mlp=3, channel_multiplier=2),
        "ada_aug_p": 0.12,
    }
    ckpt.update(extra)
    path = tmp_path / "550000.pt"
    torch.save(ckpt, path)
    return path


def test_community_checkpoint_loads_strictly_and_renders_identically(tmp_path):
    G, D = small_pair()
    path = community_file(tmp_path, G, D)
    G2 = load_generator(path)
    assert G2.config["channels"] == G.config["channels"]
    assert G2.style_dim == 16 and G2.size == 16 and len(G2.style) == 4
    z = torch.randn(2, 16)
    with torch.no_grad():
        a, _ = G([z], noise_mode="const")
        b, _ = G2([z], noise_mode="const")
    assert torch.equal(a, b)
    D2 = load_discriminator(path)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(D(x), D2(x))


def test_infer_config_from_tensors():
    G = Generator(64, style_dim=32, n_mlp=5, channel_max=24, channel_base=512)
    cfg = infer_generator_config(G.state_dict())
    assert cfg["size"] == 64 and cfg["style_dim"] == 32 and cfg["n_mlp"] == 5
    assert cfg["channels"] == G.channels


def test_snapshot_round_trip_keeps_latent_avg(tmp_path):
    G, D = small_pair()
    G.mean_latent(128)
    path = torch_save_atomic(snapshot(G, D, G_train=G, toonlab={"step": 7}), tmp_path / "snap.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["toonlab"]["step"] == 7 and set(ckpt) >= {"g", "d", "g_ema", "latent_avg"}
    G2 = load_generator(path)
    assert G2.w_avg_known and torch.equal(G2.w_avg, G.w_avg)
    assert not any(f.name.endswith(".tmp") for f in tmp_path.iterdir())


def test_bare_state_dict_is_accepted(tmp_path):
    G, _ = small_pair()
    torch.save(G.state_dict(), tmp_path / "bare.pt")
    assert load_generator(tmp_path / "bare.pt").size == 16


def test_converted_official_format(tmp_path):
    G, _ = small_pair()
    avg = torch.randn(16)
    torch.save({"g_ema": G.state_dict(), "latent_avg": avg}, tmp_path / "ffhq.pt")
    G2 = load_generator(tmp_path / "ffhq.pt")
    torch.testing.assert_close(G2.w_avg, avg)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "checkpoint not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"this is not a pickle at all"), "not a loadable checkpoint"),
        (lambda p: torch.save([1, 2, 3], p), "not a checkpoint"),
        (lambda p: torch.save({"d": {}}, p), "no generator inside"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as e:
        load_generator(path)
    assert "\n" not in str(e.value)


def test_shape_mismatch_names_key(tmp_path):
    G, _ = small_pair()
    sd = G.state_dict()
    sd["convs.1.conv.modulation.bias"] = torch.ones(7)
    torch.save({"g_ema": sd}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch at .*convs\.1\.conv\.modulation\.bias.*expected \[16\], found \[7\]"):
        load_generator(tmp_path / "m.pt")


def test_missing_key_and_bad_resolution(tmp_path):
    G, D = small_pair()
    sd = G.state_dict()
    del sd["noises.noise_2"]
    torch.save({"g_ema": sd}, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match="missing key 'noises.noise_2'"):
        load_generator(tmp_path / "k.pt")
    path = community_file(tmp_path, G, D, args=argparse.Namespace(size=24))
    with pytest.raises(CheckpointError, match="not a power of two"):
        load_generator(path)


def test_checkpoint_never_runs_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"g_ema": Evil()}, f)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint") as e:
        load_checkpoint(tmp_path / "evil.pt")
    # One line, and never torch's advice to re-run with weights_only=False (the one thing not to do).
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)


def test_the_one_reader_names_a_refused_object_and_a_corrupt_file(tmp_path):
    import os

    class Hostile:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"g_ema": Hostile()}, tmp_path / "hostile.pt")
    with pytest.raises(CheckpointError, match=r"holds a Python object \((posix|nt)\.system\)") as e:
        load_checkpoint(tmp_path / "hostile.pt")
    assert "weights_only" not in str(e.value)
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip" * 20)
    with pytest.raises(CheckpointError, match="not a loadable torch file") as e:
        load_checkpoint(tmp_path / "junk.pt")
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)


def test_export_strips_optimizers_and_keeps_loadable_parts(tmp_path):
    from stylegan2.export import export_snapshot

    G, D = small_pair()
    src = community_file(tmp_path, G, D)
    out = export_snapshot(src, tmp_path / "slim.pt")
    ckpt = load_checkpoint(out)
    assert {"g_ema", "g", "d", "latent_avg"} <= set(ckpt) and "g_optim" not in ckpt and "d_optim" not in ckpt
    G2 = load_generator(out)
    assert G2.w_avg_known
    z = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(G([z], noise_mode="const")[0], G2([z], noise_mode="const")[0])
    load_discriminator(out)


def test_half_export_halves_the_file_and_renders_like_the_float32_one(tmp_path):
    from stylegan2.export import export_snapshot

    G, D = small_pair()
    src = community_file(tmp_path, G, D)
    full = export_snapshot(src, tmp_path / "full.pt")
    half = export_snapshot(src, tmp_path / "half.pt", half=True)
    ckpt = load_checkpoint(half)
    assert ckpt["toonlab"]["dtype"] == "float16"
    assert all(v.dtype == torch.float16 for k in ("g_ema", "g", "d") for v in ckpt[k].values()
               if v.is_floating_point())
    def payload(ck: dict) -> int:
        return sum(v.numel() * v.element_size() for k in ("g_ema", "g", "d") for v in ck[k].values())

    # The weights take half the bytes (a tiny model's file is mostly per-tensor overhead; a bundled one's is not).
    assert payload(ckpt) * 2 == payload(load_checkpoint(full)) and half.stat().st_size < full.stat().st_size
    G2, D2 = load_generator(half), load_discriminator(half)
    assert next(G2.parameters()).dtype == torch.float32  # loads as float32: only the weights were rounded
    z, x = torch.randn(4, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        a, b = G([z], noise_mode="const")[0], G2([z], noise_mode="const")[0]
        # fp16 keeps ~11 bits of each weight: an image in [-1, 1] moves by far less than one 8-bit level.
        assert (a - b).abs().max() < 2 / 255, (a - b).abs().max()
        torch.testing.assert_close(D(x), D2(x), rtol=1e-2, atol=1e-2)


def test_safetensors_round_trip_every_loader(tmp_path):
    """export --format safetensors: weights + JSON config; load_generator/discriminator read it back exactly."""
    from safetensors import safe_open

    from stylegan2.checkpoint import SAFETENSORS_FORMAT, sniff_format
    from stylegan2.export import export_snapshot

    G, D = small_pair()
    src = community_file(tmp_path, G, D)
    st = export_snapshot(src, tmp_path / "G.safetensors")
    assert sniff_format(st) == "safetensors"
    with safe_open(str(st), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == SAFETENSORS_FORMAT and '"g_config"' in meta["toonlab"]
    assert "latent_avg" in keys and "g_ema.conv1.conv.weight" in keys and "d.final_linear.1.bias" in keys
    G2, D2 = load_generator(st), load_discriminator(st)
    z, x = torch.randn(2, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(G([z], noise_mode="const")[0], G2([z], noise_mode="const")[0])
        assert torch.equal(D(x), D2(x))
    # ...and back to .pt, named without a telling suffix: the content decides.
    back = export_snapshot(st, tmp_path / "G_back.bin", fmt="pt")
    a, b = load_checkpoint(src), load_checkpoint(back)
    for key in ("g_ema", "g", "d"):
        assert set(a[key]) == set(b[key]) and all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    renamed = tmp_path / "weights.pt"
    renamed.write_bytes(st.read_bytes())
    assert torch.equal(load_generator(renamed).w_avg, G2.w_avg)


def test_bare_generator_safetensors_and_bad_safetensors(tmp_path):
    from safetensors.torch import save_file

    G, _ = small_pair()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    assert load_generator(tmp_path / "bare.safetensors").size == 16
    save_file({"something": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="without StyleGAN2 weights"):
        load_generator(tmp_path / "other.safetensors")
    blob = (tmp_path / "bare.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="not a loadable safetensors file") as e:
        load_generator(tmp_path / "cut.safetensors")
    assert "\n" not in str(e.value)


def test_discriminator_config_keeps_stddev_group(tmp_path):
    G, _ = small_pair()
    D = Discriminator(16, channel_max=16, channel_base=128, stddev_group=2)
    path = torch_save_atomic(snapshot(G, D), tmp_path / "s.pt")
    assert load_discriminator(path).stddev_group == 2
