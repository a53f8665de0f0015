"""The held-out audit's environment faults and bad inputs, through the commands users type.

A full disk and a read-only folder are injected where the machine meets them (``os.fsync`` and
``Path.mkdir``; root ignores file modes, so a chmod would prove nothing) and must end in one line
naming the output path and the cause, exit 2, for every command that writes files.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.conftest import tiny_checkpoint
from toonlab.cli import load_command

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(p)
    return p


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "G.pt", with_d=True)


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Path:
    models = pytest.importorskip("translation.models")
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("tr") / "lite.pt"
    torch.save(models.build_generator("animegan2-lite").state_dict(), p)
    return p


def _photo(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _commands(ckpt: Path, translator: Path, photo: Path, folder: Path, out: Path) -> dict[str, list[str]]:
    """Every writing command, with ``out`` (a path inside the faulty folder) as its output."""
    return {
        "generate": ["--ckpt", str(ckpt), "--seeds", "0", "--device", "cpu", "--out", str(out)],
        "mix": ["--ckpt", str(ckpt), "--rows", "0", "--cols", "1", "--device", "cpu", "--out", str(out / "m.png")],
        "truncation": ["--ckpt", str(ckpt), "--seeds", "0", "--truncation", "0.5,1", "--device", "cpu",
                       "--out", str(out / "t.png")],
        "interpolate": ["--ckpt", str(ckpt), "--seeds", "0,1", "--frames", "2", "--device", "cpu",
                        "--out", str(out / "i.mp4")],
        "export": ["--ckpt", str(ckpt), "--out", str(out / "e.pt")],
        "sefa": ["factorize", "--ckpt", str(ckpt), "--out", str(out / "s.pt")],
        "translate": [str(photo), "--ckpt", str(translator), "--device", "cpu", "-q", "--out", str(out)],
        "prepare": [str(folder), "--size", "16", "--workers", "0", "--out", str(out / "d.lmdb")],
        "project": [str(photo), "--ckpt", str(ckpt), "--no-align", "--iters", "2", "--perceptual", "none",
                    "--device", "cpu", "--out", str(out)],
    }


@pytest.mark.parametrize("fault", ["enospc", "erofs"])
@pytest.mark.parametrize("command", ["generate", "mix", "truncation", "interpolate", "export", "sefa", "translate",
                                     "prepare", "project", "align"])
def test_a_full_disk_or_read_only_folder_is_one_line_naming_the_path(tmp_path, monkeypatch, ckpt, translator,
                                                                     astronaut_png, command, fault):
    src = tmp_path / "src"
    src.mkdir()
    photo = _photo(src / "p.png")
    bad = tmp_path / "bad"
    out = bad / "out"
    args = _commands(ckpt, translator, photo, src, out)
    if command == "align":
        args["align"] = [str(astronaut_png), "--size", "32", "--out", str(out / "a.png")]
    if fault == "erofs":
        real_mkdir = Path.mkdir

        def mkdir(self, *a, **kw):
            if str(self).startswith(str(bad)):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_mkdir(self, *a, **kw)

        monkeypatch.setattr(Path, "mkdir", mkdir)
        real_makedirs = os.makedirs

        def makedirs(name, *a, **kw):
            if str(name).startswith(str(bad)):
                raise OSError(errno.EROFS, "Read-only file system", str(name))
            return real_makedirs(name, *a, **kw)

        monkeypatch.setattr(os, "makedirs", makedirs)
        cause = "Read-only file system"
    else:
        bad.mkdir()
        real_fsync = os.fsync

        def fsync(fd):  # what a full disk does to the last write: ENOSPC without a file name (PIL's way)
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(bad)):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        real_usage = shutil.disk_usage

        def disk_usage(p):  # LMDB writes through a memory map: prepare checks the free space instead
            u = real_usage(p)
            return type(u)(u.total, u.total, 0) if str(p).startswith(str(bad)) else u

        monkeypatch.setattr(shutil, "disk_usage", disk_usage)
        cause = "No space left on device"
    r = CliRunner().invoke(load_command(command), args[command])
    assert r.exit_code == 2, r.output
    errors = [ln[ln.index("Error:"):] for ln in r.output.splitlines() if "Error:" in ln]  # after a bar's \r
    assert len(errors) == 1, r.output
    assert cause in errors[0] and str(bad) in errors[0] and ".tmp" not in errors[0], errors[0]
    assert "Traceback" not in r.output
    leftovers = [p for p in bad.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or ".tmp-" in str(p))]
    assert not leftovers


def test_torch_save_on_a_full_disk_is_an_oserror_naming_the_file(tmp_path, monkeypatch):
    """torch.save reports a full disk as RuntimeError('... unexpected pos ...'): the helper names the file."""
    from toonlab import atomic

    def save(obj, f):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 896 vs 790")

    monkeypatch.setattr(torch, "save", save)
    target = tmp_path / "x.pt"
    with pytest.raises(OSError) as e:
        atomic.torch_save_atomic({"a": 1}, target)
    assert e.value.filename == str(target) and "unexpected pos" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no temporary, no partial file
    monkeypatch.setattr(atomic, "disk_full", lambda folder: True)
    with pytest.raises(OSError) as e:
        atomic.torch_save_atomic({"a": 1}, target)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)


def test_a_bug_inside_an_atomic_write_is_not_disguised(tmp_path):
    from toonlab.atomic import atomic_path

    with pytest.raises(RuntimeError, match="a real bug"):
        with atomic_path(tmp_path / "x.png"):
            raise RuntimeError("a real bug")
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "y.png"):
            open(tmp_path / "nowhere" / "z")


# ---- prepare_data: atomic, locked, no half-written LMDB --------------------------------------------------


def _image_folder(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _photo(root / f"{i}.png", 20, 20, seed=i)
    return root


def test_prepare_refuses_a_second_writer_of_the_same_lmdb(tmp_path):
    from toonlab.lock import FolderLock
    from toonlab.prepare import prepare_lmdb

    src = _image_folder(tmp_path / "src")
    out = tmp_path / "d.lmdb"
    # Another process holds OUT's lock: a child that takes it and waits.
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from toonlab.lock import FolderLock; "
            "FolderLock(sys.argv[2], name=sys.argv[3]).acquire(); print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(tmp_path), f".{out.name}.lock"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        r = CliRunner().invoke(load_command("prepare"), [str(src), "--size", "16", "--workers", "0",
                                                         "--out", str(out)])
        assert r.exit_code == 2, r.output
        assert str(out) in r.output and f"process {child.pid}" in r.output and "Traceback" not in r.output
        assert not out.exists()
    finally:
        child.kill()
        child.wait()
    # The owner died (kill -9 drops the flock): the lock is taken over and the LMDB written.
    report = prepare_lmdb(src, out, [16], workers=0, progress=False)
    assert report.written == 6 and out.is_dir()
    assert not (tmp_path / f".{out.name}.lock").exists()
    assert FolderLock(tmp_path, name=f".{out.name}.lock").acquire().held


def test_prepare_removes_half_written_lmdbs_of_killed_runs_and_never_publishes_one(tmp_path, monkeypatch):
    from toonlab import prepare
    from toonlab.data import LMDBImages

    src = _image_folder(tmp_path / "src")
    out = tmp_path / "d.lmdb"
    stale = tmp_path / "d.lmdb.tmp-99999"  # what a run killed with SIGKILL leaves
    stale.mkdir()
    (stale / "data.mdb").write_bytes(b"\0" * 4096)
    real = prepare._put_all
    calls = []

    def put_all(env, items, *a, **kw):
        calls.append(len(items))
        if any(k == b"length" for k, _ in items):
            raise __import__("lmdb").Error("mdb_txn_commit: Input/output error")
        return real(env, items, *a, **kw)

    monkeypatch.setattr(prepare, "_put_all", put_all)
    r = CliRunner().invoke(load_command("prepare"), [str(src), "--size", "16", "--workers", "0", "--out", str(out)])
    assert r.exit_code == 2 and calls, r.output
    assert f"could not write the LMDB {out}: mdb_txn_commit: Input/output error" in r.output
    assert "Traceback" not in r.output
    assert not out.exists() and not stale.exists() and not list(tmp_path.glob("d.lmdb.tmp-*"))
    monkeypatch.setattr(prepare, "_put_all", real)
    r = CliRunner().invoke(load_command("prepare"), [str(src), "--size", "16", "--workers", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(LMDBImages(out, 16)) == 6


# ---- a truncated LMDB: one line, not a SIGBUS -------------------------------------------------------------


@pytest.fixture(scope="module")
def truncated_lmdb(tmp_path_factory) -> Path:
    """A real LMDB written by prepare, then cut to half its size as a partial copy leaves it."""
    from toonlab.prepare import prepare_lmdb

    root = tmp_path_factory.mktemp("lmdb")
    src = _image_folder(root / "src", 24)
    out = root / "data.lmdb"
    prepare_lmdb(src, out, [16, 32], workers=0, progress=False)
    data = out / "data.mdb"
    os.truncate(data, os.path.getsize(data) // 2)
    return out


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("command", ["train", "finetune", "translate-train", "metrics"])
def test_a_truncated_lmdb_is_one_line_in_every_command_that_reads_datasets(tmp_path, ckpt, truncated_lmdb,
                                                                           command, workers):
    data = str(truncated_lmdb)
    args = {
        "train": [data, "--size", "16", "--channel-max", "16", "--iters", "1", "--batch", "2", "--device", "cpu",
                  "--workers", workers, "--out", str(tmp_path / "run")],
        "finetune": ["--ckpt", str(ckpt), "--data", data, "--iters", "1", "--batch", "2", "--device", "cpu",
                     "--workers", workers, "--out", str(tmp_path / "run")],
        "translate-train": ["--photos", data, "--style", data, "--size", "32", "--iters", "1", "--batch", "1",
                            "--features", "random", "--device", "cpu", "--workers", workers,
                            "--out", str(tmp_path / "run")],
        "metrics": ["fid", data, data, "--size", "16", "--features", "random", "--device", "cpu",
                    "--workers", workers],
    }[command]
    # A child process: a SIGBUS (what a truncated LMDB did) kills the interpreter, not just the test.
    r = subprocess.run([sys.executable, "-m", "toonlab.cli", command, *args], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and "truncated" in last and str(truncated_lmdb) in last, last
    assert "Traceback" not in r.stderr


def test_an_intact_lmdb_passes_the_size_check_and_reads_every_image(tmp_path):
    from toonlab.data import LMDBImages
    from toonlab.prepare import prepare_lmdb

    out = tmp_path / "ok.lmdb"
    prepare_lmdb(_image_folder(tmp_path / "src", 5), out, [16], workers=0, progress=False)
    ds = LMDBImages(out, 16)
    assert len(ds) == 5 and all(ds[i] is not None for i in range(5))
    # One page short is already truncated.
    os.truncate(out / "data.mdb", os.path.getsize(out / "data.mdb") - 4096)
    from toonlab import data as tdata

    for _, env in tdata._ENVS.values():  # this process's cached environment; reopen from scratch
        env.close()
    tdata._ENVS.clear()
    with pytest.raises(tdata.DatasetError, match="truncated"):
        LMDBImages(out, 16)


# ---- projection of several photos: skip and list the bad ones ---------------------------------------------


def test_project_skips_and_lists_bad_photos_and_writes_one_latent_per_photo(tmp_path, ckpt, astronaut_png):
    from toonlab.checkpoint import load_torch_file

    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not a photo at all\n")
    noface = _photo(tmp_path / "noise.png", 64, 64, seed=3)  # random pixels: dlib finds no face
    out = tmp_path / "proj"
    r = CliRunner().invoke(load_command("project"), [str(astronaut_png), str(zero), str(text), str(noface),
                                                     "--ckpt", str(ckpt), "--iters", "2", "--perceptual", "none",
                                                     "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    skipped = [ln for ln in r.output.splitlines() if ln.startswith("skipped ")]
    assert len(skipped) == 3, r.output
    assert any("zero.jpg" in ln for ln in skipped) and any("text.jpg" in ln for ln in skipped)
    assert any("noise.png" in ln and "no face" in ln for ln in skipped)
    assert "projected 1 of 4 photos" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["astronaut"]
    obj = load_torch_file(out / "astronaut" / "latent.pt")
    lat = obj["latent"]
    assert lat.ndim == 2 and lat.untyped_storage().nbytes() == lat.numel() * 4  # this photo's latent only


def test_project_batch_latent_files_hold_only_their_photo(tmp_path, ckpt):
    from toonlab.checkpoint import load_torch_file

    photos = [_photo(tmp_path / f"p{i}.png", 20, 20, seed=i) for i in range(3)]
    out = tmp_path / "proj"
    r = CliRunner().invoke(load_command("project"), [*map(str, photos), "--ckpt", str(ckpt), "--no-align",
                                                     "--iters", "2", "--perceptual", "none", "--device", "cpu",
                                                     "--out", str(out)])
    assert r.exit_code == 0, r.output
    sizes = set()
    for i in range(3):
        obj = load_torch_file(out / f"p{i}" / "latent.pt")
        assert obj["source"] == str(photos[i])
        assert obj["latent"].untyped_storage().nbytes() == obj["latent"].numel() * 4
        assert all(t.untyped_storage().nbytes() == t.numel() * 4 for t in obj["noise"])
        sizes.add((out / f"p{i}" / "latent.pt").stat().st_size)
    assert len(sizes) == 1


def test_project_with_no_usable_photo_exits_2_listing_them(tmp_path, ckpt):
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    r = CliRunner().invoke(load_command("project"), [str(zero), str(tmp_path / "missing.png"), "--ckpt", str(ckpt),
                                                     "--no-align", "--iters", "2", "--perceptual", "none",
                                                     "--device", "cpu", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("Error: no usable photo (2 skipped)") and "zero.jpg" in last and "missing.png" in last
    assert not (tmp_path / "o").exists()


def test_grid_column_labels_never_overlap():
    from PIL import ImageDraw, ImageFont

    from toonlab.images import make_grid

    tiles = [Image.new("RGB", (32, 32), (200, 200, 200)) for _ in range(3)]
    labels = ["photo (aligned)", "projected", "swap2 webtoon_long_name"]
    for c in range(3):  # each label alone: its ink stays inside its own column
        only = ["" if k != c else labels[k] for k in range(3)]
        grid = make_grid(tiles, cols=3, col_labels=only, fit_labels=True)
        a = np.asarray(grid)[: grid.height - 32 - 4]
        xs = np.argwhere(a.min(axis=2) < 128)[:, 1]
        assert xs.size and xs.min() >= 2 + c * 34 and xs.max() < 2 + c * 34 + 32, (c, xs.min(), xs.max())
    font = ImageFont.load_default()
    assert ImageDraw.Draw(grid).textlength(labels[0], font=font) > 32  # the label really needed wrapping


# ---- the projector offline: pixel + MS-SSIM when the VGG trunk is missing -----------------------------------


def test_ms_ssim_is_one_for_equal_images_falls_with_noise_and_matches_skimage_at_one_scale():
    from skimage.metrics import structural_similarity

    from losses.ssim import ms_ssim

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    assert torch.allclose(ms_ssim(a, a), torch.ones(2), atol=1e-5)
    noisy = [ms_ssim(a, (a + s * torch.randn(a.shape, generator=g)).clamp(-1, 1)) for s in (0.05, 0.2, 0.8)]
    assert (noisy[0] > noisy[1]).all() and (noisy[1] > noisy[2]).all()
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    for i in range(2):  # 16 px holds one 11-px window: MS-SSIM is SSIM there
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), data_range=2.0, channel_axis=0,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(ms_ssim(a[i:i + 1], b[i:i + 1]).item() - ref) < 1e-4
    big = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
    x = (big + 0.3 * torch.randn(big.shape, generator=g)).requires_grad_(True)
    v = ms_ssim(x, big)
    v.sum().backward()
    assert 0 < v.item() < 1 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_auto_perceptual_uses_lpips_vgg_when_its_weights_are_on_disk(tmp_path, monkeypatch):
    from inversion import project as pj

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    choice, warning = pj.resolve_perceptual("auto")
    assert choice == "msssim" and "vgg16-397923af.pth" in warning and str(tmp_path / "torch") in warning
    assert "--lpips-weights" in warning and "\n" not in warning
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "vgg16-397923af.pth").write_bytes(b"weights")
    assert pj.resolve_perceptual("auto") == ("lpips-vgg", None)
    assert pj.resolve_perceptual("lpips") == ("lpips-vgg", None)
    with pytest.raises(pj.UserInputError):  # an explicit file that is not there is an error, not a fallback
        pj.resolve_perceptual("auto", tmp_path / "missing.pth")


def test_project_offline_falls_back_to_msssim_and_says_so(tmp_path, monkeypatch, ckpt):
    from stylegan2.latents import load_latent

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    photo = _photo(tmp_path / "face.png", 32, 32)
    out = tmp_path / "proj"
    r = CliRunner().invoke(load_command("project"), [str(photo), "--ckpt", str(ckpt), "--no-align", "--iters", "12",
                                                     "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    warns = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warns) == 1 and "vgg16-397923af.pth" in warns[0] and "MS-SSIM" in warns[0], r.output
    assert "loss: pixel MSE + MS-SSIM" in r.output
    import json

    info = json.loads((out / "face" / "projection.json").read_text())
    assert info["perceptual"] == "msssim" and 0 < info["final_perceptual"] < 1
    assert load_latent(out / "face" / "latent.pt")["settings"]["perceptual"] == "msssim"


def test_msssim_projection_lowers_its_loss():
    from inversion import project as pj
    from tests.conftest import tiny_generator

    G = tiny_generator(16).eval()
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    lp = pj.build_perceptual("msssim", None, torch.device("cpu"))
    res = pj.project(G, target, lp, pj.ProjectConfig(steps=40, n_mean_latent=500), show_progress=False)
    assert res.history[-1]["perceptual"] < res.history[0]["perceptual"]
    assert res.history[-1]["mse"] < res.history[0]["mse"]


# ---- messages that name the real problem ---------------------------------------------------------------


def test_a_stylegan2_checkpoint_given_to_translate_says_what_it_is(tmp_path, ckpt):
    photo = _photo(tmp_path / "p.png")
    r = CliRunner().invoke(load_command("translate"), [str(photo), "--ckpt", str(ckpt), "--out", str(tmp_path / "o"),
                                                       "-q", "--device", "cpu"])
    assert r.exit_code == 2
    assert "this is a StyleGAN2 generator, not a translator" in r.output and r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("command", ["generate", "project"])
def test_a_translator_given_to_a_stylegan2_command_says_what_it_is(tmp_path, translator, command):
    import translation.models as models

    # A translator training checkpoint (g / g_ema like a StyleGAN2 one) and a bare port state dict.
    trained = tmp_path / "trained.pt"
    torch.save({"g": models.build_generator("cartoongan").state_dict(),
                "g_ema": models.build_generator("cartoongan").state_dict(), "step": 3}, trained)
    for path in (translator, trained):
        args = {"generate": ["--ckpt", str(path), "--out", str(tmp_path / "g"), "--device", "cpu"],
                "project": [str(_photo(tmp_path / "p.png")), "--ckpt", str(path), "--no-align", "--iters", "1",
                            "--perceptual", "none", "--device", "cpu", "--out", str(tmp_path / "pj")]}[command]
        r = CliRunner().invoke(load_command(command), args)
        assert r.exit_code == 2, r.output
        assert "translator" in r.output and "not a StyleGAN2 generator" in r.output and "translate" in r.output


def test_translate_calls_a_failed_write_could_not_write_not_unreadable(tmp_path, monkeypatch, translator):
    import translation.batch as batch

    photos = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "o"

    def save(arr, dst, quality):
        if dst.name == "p1.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return batch.save_image_atomic(Image.fromarray(arr), dst)

    monkeypatch.setattr(batch, "_save", save)
    r = CliRunner().invoke(load_command("translate"), [*map(str, photos), "--ckpt", str(translator), "--out", str(out),
                                                       "-q", "--device", "cpu"])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert last == f"Error: could not write 1 output: {out / 'p1.png'}: No space left on device", r.output
    assert "unreadable" not in r.output and (out / "p0.png").is_file()


# ---- silent partial results ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_models(tmp_path_factory) -> tuple[Path, Path]:
    """A StyleGAN2 checkpoint and a translator whose weights are NaN (as a diverged run leaves them)."""
    import translation.models as models
    from stylegan2.checkpoint import snapshot
    from tests.conftest import tiny_generator
    from toonlab.atomic import torch_save_atomic

    root = tmp_path_factory.mktemp("nan")
    G = tiny_generator(16)
    with torch.no_grad():
        G.conv1.conv.weight.fill_(float("nan"))
    g_path = torch_save_atomic(snapshot(G, None), root / "G_nan.pt")
    torch.manual_seed(0)
    T = models.build_generator("animegan2-lite")
    with torch.no_grad():
        next(iter(T.parameters())).fill_(float("nan"))
    t_path = root / "T_nan.pt"
    torch.save(T.state_dict(), t_path)
    return g_path, t_path


@pytest.mark.parametrize("command", ["generate", "project", "translate", "translate-tiled", "mix", "truncation",
                                     "interpolate", "metrics"])
def test_a_generator_with_nan_weights_is_non_finite_output_exit_2(tmp_path, nan_models, command):
    g_path, t_path = nan_models
    photo = _photo(tmp_path / "p.png", 40, 100)  # wider than --max-side 64: tiled
    out = tmp_path / "out"
    args = {
        "generate": ["--ckpt", str(g_path), "--seeds", "0-1", "--device", "cpu", "--out", str(out)],
        "project": [str(photo), "--ckpt", str(g_path), "--no-align", "--iters", "30", "--perceptual", "none",
                    "--device", "cpu", "--out", str(out)],
        "translate": [str(photo), "--ckpt", str(t_path), "-q", "--device", "cpu", "--out", str(out)],
        "translate-tiled": [str(photo), "--ckpt", str(t_path), "-q", "--device", "cpu", "--max-side", "64",
                            "--tile", "64", "--overlap", "16", "--out", str(out)],
        "mix": ["--ckpt", str(g_path), "--rows", "0", "--cols", "1", "--device", "cpu", "--out", str(out / "m.png")],
        "truncation": ["--ckpt", str(g_path), "--seeds", "0", "--device", "cpu", "--out", str(out / "t.png")],
        "interpolate": ["--ckpt", str(g_path), "--seeds", "0,1", "--frames", "2", "--device", "cpu",
                        "--out", str(out / "i.mp4")],
        "metrics": ["fid", f"gen:{g_path}", str(photo.parent), "--n", "4", "--features", "random", "--device", "cpu",
                    "--no-cache"],
    }[command]
    r = CliRunner().invoke(load_command(command.split("-tiled")[0]), args)
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    last = last[last.find("Error:"):]  # after a progress bar's carriage returns
    assert last.startswith("Error: non-finite output:") and "NaN" in last, r.output
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == [], written


def test_a_truncated_video_is_reported_and_exits_non_zero(tmp_path, translator):
    from toonlab.video import count_frames, write_video

    rng = np.random.default_rng(0)
    clip = write_video([rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(40)],
                       tmp_path / "clip.mp4", fps=20)
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    n = count_frames(cut)
    if not 0 < n < 40:
        pytest.skip(f"this encoder's truncated mp4 decodes {n} frames")
    out = tmp_path / "o"
    r = CliRunner().invoke(load_command("translate"), [str(cut), "--ckpt", str(translator), "-q", "--device", "cpu",
                                                       "--out", str(out)])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert f"only {n} of the 40 frames" in last and str(cut) in last, r.output
    # The intact clip is complete: exit 0.
    r = CliRunner().invoke(load_command("translate"), [str(clip), "--ckpt", str(translator), "-q", "--device", "cpu",
                                                       "--out", str(tmp_path / "o2")])
    assert r.exit_code == 0, r.output


# ---- translate --skip-existing: one run per output folder --------------------------------------------------


def test_two_skip_existing_translate_runs_cannot_share_an_output_folder(tmp_path, translator):
    from translation.infer import TRANSLATE_LOCK

    photos = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "o"
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from toonlab.lock import FolderLock; "
            "FolderLock(sys.argv[2], name=sys.argv[3]).acquire(); print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(out), TRANSLATE_LOCK],
                             stdout=subprocess.PIPE, text=True)
    args = [*map(str, photos), "--ckpt", str(translator), "-q", "--device", "cpu", "--out", str(out),
            "--skip-existing"]
    try:
        assert child.stdout.readline().strip() == "locked"
        r = CliRunner().invoke(load_command("translate"), args)
        assert r.exit_code == 2, r.output
        assert f"output folder {out} is in use by process {child.pid}" in r.output and "Traceback" not in r.output
        assert not (out / "p0.png").exists()
    finally:
        child.kill()
        child.wait()
    r = CliRunner().invoke(load_command("translate"), args)  # the owner died: its lock is taken over
    assert r.exit_code == 0, r.output
    assert "took over the lock" in r.output and (out / "p0.png").is_file() and (out / "p1.png").is_file()
    assert not (out / TRANSLATE_LOCK).exists()
    r = CliRunner().invoke(load_command("translate"), args)
    assert r.exit_code == 0 and "2 already there" in r.output, r.output


# ---- size limits, progress on tiles, align's small fixes ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_load_image_downscales_above_max_pixels_and_remembers_the_size(tmp_path, fmt):
    from toonlab.images import downscaled_from, load_image, parse_pixels

    p = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1000, 1500, 3), dtype=np.uint8)).save(p, format=fmt)
    img = load_image(p, max_pixels=300_000)
    assert img.width * img.height <= 300_000 and img.width > img.height and downscaled_from(img) == (1500, 1000)
    assert downscaled_from(load_image(p)) is None and load_image(p).size == (1500, 1000)
    assert parse_pixels("40M") == parse_pixels("40MP") == parse_pixels("40000000") == 40_000_000
    with pytest.raises(ValueError):
        parse_pixels("lots")


def test_translate_max_pixels_downscales_with_a_note(tmp_path, translator):
    photo = _photo(tmp_path / "big.png", 600, 800)
    out = tmp_path / "o"
    r = CliRunner().invoke(load_command("translate"), [str(photo), "--ckpt", str(translator), "-q", "--device", "cpu",
                                                       "--max-pixels", "0.1M", "--out", str(out)])
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.output.splitlines() if ln.startswith("note:") and "--max-pixels" in ln]
    assert len(notes) == 1 and "800x600" in notes[0], r.output
    w, h = Image.open(out / "big.png").size
    assert w * h <= 100_000 and w > h
    r = CliRunner().invoke(load_command("translate"), [str(photo), "--ckpt", str(translator), "-q", "--device", "cpu",
                                                       "--max-pixels", "much", "--out", str(out)])
    assert r.exit_code == 2 and "--max-pixels" in r.output


def test_tiled_translation_shows_a_progress_bar_over_tiles(capsys, translator):
    from translation.inference import Translator, translate_tiled
    from translation.models import load_generator

    G, _ = load_generator(translator)
    tr = Translator(G, torch.device("cpu"), "fp32")
    arr = np.random.default_rng(0).integers(0, 255, (64, 160, 3), dtype=np.uint8)
    y = translate_tiled(tr, arr, tile=64, overlap=16, batch=2, show_progress=True)
    assert y.shape == (3, 64, 160)
    err = capsys.readouterr().err
    assert "tiles 160x64" in err and "tile" in err


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory, astronaut_png) -> Path:
    """Two copies of the astronaut side by side: two faces, one larger."""
    a = Image.open(astronaut_png)
    both = Image.new("RGB", (a.width * 2, a.height), (90, 90, 90))
    both.paste(a, (0, 0))
    both.paste(a.resize((a.width * 3 // 4, a.height * 3 // 4)), (a.width, a.height // 8))
    p = tmp_path_factory.mktemp("two") / "two.png"
    both.save(p)
    return p


def test_align_all_with_an_image_out_writes_numbered_files_not_a_folder(tmp_path, two_faces):
    out = tmp_path / "all.png"
    r = CliRunner().invoke(load_command("align"), [str(two_faces), "--all", "--size", "64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not out.exists()
    made = sorted(p.name for p in tmp_path.glob("all_*.png"))
    assert len(made) >= 2 and made[:2] == ["all_0.png", "all_1.png"], r.output
    assert f"--out {out} is a file name; {len(made)} faces were written as all_0.png" in r.output


def test_align_default_crop_mentions_the_other_faces(tmp_path, two_faces):
    r = CliRunner().invoke(load_command("align"), [str(two_faces), "--size", "64", "--out", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    warns = [ln for ln in r.output.splitlines() if ln.startswith("warning:") and "faces found" in ln]
    assert len(warns) == 1 and "--all" in warns[0], r.output
    assert (tmp_path / "a.png").is_file()


def test_align_warns_when_a_small_face_is_upscaled_and_when_a_photo_is_downscaled(tmp_path, astronaut_png):
    from inversion import align as al

    a = Image.open(astronaut_png)
    small = tmp_path / "small.png"
    a.resize((a.width // 3, a.height // 3)).save(small)
    qsize = al.face_quad(al.detect_faces(Image.open(small).convert("RGB"))[0])[1]
    r = CliRunner().invoke(load_command("align"), [str(small), "--size", "256", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    assert qsize < 128 and "upscaled" in r.output and "blurry" in r.output, (qsize, r.output)
    big = tmp_path / "big.png"
    a.resize((a.width * 2, a.height * 2)).save(big)
    r = CliRunner().invoke(load_command("align"), [str(big), "--size", "64", "--max-pixels", "0.5M",
                                                   "--out", str(tmp_path / "b.png")])
    assert r.exit_code == 0, r.output
    assert "1024x1024 (1 MP) is above --max-pixels 0.5 MP; downscaled to 512x512" in r.output, r.output


# ---- found by the mini-audit -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["align", "project"])
def test_a_corrupt_landmark_model_is_one_line(tmp_path, ckpt, astronaut_png, command):
    bad = tmp_path / "landmarks.dat"
    bad.write_bytes(os.urandom(4000))
    args = {"align": [str(astronaut_png), "--landmarks", str(bad), "--out", str(tmp_path / "a.png")],
            "project": [str(astronaut_png), "--ckpt", str(ckpt), "--landmarks", str(bad), "--iters", "1",
                        "--perceptual", "none", "--device", "cpu", "--out", str(tmp_path / "p")]}[command]
    r = CliRunner().invoke(load_command(command), args)
    assert r.exit_code == 2, r.output
    assert "not a dlib shape predictor" in r.output and str(bad) in r.output and "Traceback" not in r.output


def test_edges_into_a_read_only_folder_names_the_folder_not_unreadable_inputs(tmp_path, monkeypatch):
    src = _image_folder(tmp_path / "style", 3)
    bad = tmp_path / "ro"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **kw):
        if str(self).startswith(str(bad)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    r = CliRunner().invoke(load_command("edges"), [str(src), "--out", str(bad / "e"), "--workers", "1", "-q"])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert "Read-only file system" in last and str(bad) in last and "unreadable" not in last, r.output


def test_the_command_runner_turns_a_stray_machine_fault_into_one_line(monkeypatch, tmp_path, ckpt):
    """A machine fault raised after a command's own error block (here: printing its summary to a
    full disk) still ends in one line, exit 2 (toonlab.cli guards every command)."""
    import click

    import stylegan2.generate as gen
    from toonlab.cli import _LOADED

    real_echo = click.echo

    def echo(message=None, *a, **kw):
        if str(message).startswith("wrote "):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "log.txt"))
        return real_echo(message, *a, **kw)

    monkeypatch.setattr(gen, "run_generate", lambda *a, **kw: tmp_path / "o" / "grid.png")
    monkeypatch.setattr(click, "echo", echo)
    _LOADED.pop("generate", None)
    r = CliRunner().invoke(load_command("generate"), ["--ckpt", str(ckpt), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, (r.output, r.exception)
    assert f"Error: {tmp_path / 'log.txt'}: No space left on device" in r.output
