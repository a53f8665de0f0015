"""Dataset readers (folder, zip, LMDB), image decoding and the LMDB preparation tool.

Everything runs on tiny images built in tmp_path, on the CPU, in a few seconds.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` from anywhere: make the checkout importable
    sys.path.insert(0, str(ROOT))

import lmdb  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import toonlab.prepare as prep  # noqa: E402
from toonlab.data import (  # noqa: E402
    DatasetError,
    ImageFolder,
    LMDBImages,
    UnreadableImageWarning,
    ZipImages,
    infinite_loader,
    open_dataset,
)
from toonlab.images import ImageError, load_image, resize_center_crop, to_tensor  # noqa: E402
from toonlab.prepare import PrepareError, prepare_lmdb  # noqa: E402


def _load_cli():
    """Load stylegan2/prepare_data.py the way `python stylegan2/prepare_data.py` runs it.

    Loading by path (not `import stylegan2.prepare_data`) keeps this test independent of
    the stylegan2 package's own imports (the networks), which the tool does not need.
    """
    import importlib.util

    script = ROOT / "stylegan2" / "prepare_data.py"
    spec = importlib.util.spec_from_file_location("prepare_data_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


prepare_cli = _load_cli()

# --------------------------------------------------------------------------- helpers


def smooth_rgb(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth, asymmetric colour image (JPEG-friendly, so round trips stay close)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b, c = rng.uniform(0.2, 0.8, 3)
    r = 255 * x / max(w - 1, 1)
    g = 255 * (a * y / max(h - 1, 1) + (1 - a) * 0.5)
    bl = 255 * (b + (1 - b) * np.sin(x / w * 3 + c) ** 2) * (y < h / 2)
    return Image.fromarray(np.stack([r, g, bl], -1).clip(0, 255).astype(np.uint8))


def encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_folder(root: Path, n: int = 4) -> list[Path]:
    """n good images spread over nested folders with mixed extensions/sizes."""
    paths = []
    for i in range(n):
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        ext = [".png", ".JPG", ".webp", ".bmp"][i % 4]
        p = sub / f"img{i}{ext}"
        smooth_rgb(40 + 8 * i, 30 + 4 * i, seed=i).save(p, **({"quality": 95} if ext == ".JPG" else {}))
        paths.append(p)
    (root / "notes.txt").write_text("not an image, ignored")
    return sorted(paths)


def add_bad_files(root: Path) -> dict[str, Path]:
    good = encoded(smooth_rgb(32, 32), "JPEG")
    bad = {
        "zero": root / "zero.png",
        "truncated": root / "truncated.jpg",
        "text": root / "text.jpg",
    }
    bad["zero"].write_bytes(b"")
    bad["truncated"].write_bytes(good[: len(good) // 2])
    bad["text"].write_text("<html>404 not found</html>")
    return bad


def check_batch(t: torch.Tensor, size: int) -> None:
    assert t.dtype == torch.float32
    assert t.shape == (3, size, size)
    assert t.min() >= -1.0 and t.max() <= 1.0
    assert t.std() > 0.05  # not a blank image


# --------------------------------------------------------------------------- formats


def test_folder_nested(tmp_path: Path) -> None:
    paths = make_folder(tmp_path / "faces")
    ds = ImageFolder(tmp_path / "faces", 16)
    assert ds.files == paths  # recursive, sorted, case-insensitive extensions, .txt dropped
    assert len(ds) == 4 and ds.skipped == []
    for i in range(len(ds)):
        check_batch(ds[i], 16)
    assert ds.describe() == f"folder {tmp_path / 'faces'}: 4 images at 16 px"


def test_zip(tmp_path: Path) -> None:
    zpath = tmp_path / "faces.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("faces/", b"")  # directory entry
        for i in range(5):
            zf.writestr(f"faces/{i % 2}/f{i}.png", encoded(smooth_rgb(24, 36, seed=i)))
        zf.writestr("__MACOSX/faces/._f0.png", b"\x00\x05\x16\x07 resource fork")
        zf.writestr("faces/LICENSE", b"cc-by")
    ds = ZipImages(zpath, 16, flip=False)
    assert len(ds) == 5 and ds.skipped == []
    for i in range(len(ds)):
        check_batch(ds[i], 16)
    expected = to_tensor(resize_center_crop(smooth_rgb(24, 36, seed=0), 16))
    assert torch.equal(ds[0], expected)
    # The open handle is never pickled (spawned DataLoader workers reopen it).
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._zip is None and torch.equal(clone[0], expected)
    # Forked workers each open their own handle and read correct data.
    it = infinite_loader(ds, batch_size=2, workers=2, seed=0)
    for _ in range(4):
        batch = next(it)
        assert batch.shape == (2, 3, 16, 16)
    it.close()


def test_lmdb_two_sizes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_folder(src, n=5)
    out = tmp_path / "faces.lmdb"
    report = prepare_lmdb(src, out, [32, 16], workers=2, progress=False)
    assert report.written == 5 and report.skipped == [] and report.sizes == (16, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.lmdb", "src"]  # no tmp left

    # The community layout, byte for byte in its keys.
    env = lmdb.open(str(out), readonly=True, lock=False)
    with env.begin() as txn:
        keys = sorted(bytes(k) for k, _ in txn.cursor())
        assert txn.get(b"length") == b"5"
        first = bytes(txn.get(b"32-00000"))
    env.close()
    assert keys == sorted([f"{s}-{i:05d}".encode() for s in (16, 32) for i in range(5)] + [b"length"])
    assert first[:3] == b"\xff\xd8\xff"  # JPEG

    sources = [load_image(p) for p in sorted(src.rglob("img*"))]
    for size in (16, 32):
        ds = LMDBImages(out, size, flip=False)
        assert len(ds) == 5
        assert ds.describe() == f"lmdb {out}: 5 images at {size} px (sizes in file: 16, 32)"
        for i in range(5):
            t = ds[i]
            check_batch(t, size)
            # JPEG q100 round trip resembles the resized source.
            ref = to_tensor(resize_center_crop(sources[i], size))
            assert (t - ref).abs().mean() < 0.03, (size, i)

    # The environment is open in this process now; forked workers must still get their own.
    it = infinite_loader(ds, batch_size=2, workers=2, seed=0)
    for _ in range(3):
        assert next(it).shape == (2, 3, 32, 32)
    it.close()


def test_lmdb_missing_size_lists_sizes(tmp_path: Path) -> None:
    make_folder(tmp_path / "src", n=2)
    prepare_lmdb(tmp_path / "src", tmp_path / "x.lmdb", [16, 32], workers=0, progress=False)
    with pytest.raises(DatasetError, match=r"size 64 not in LMDB .*x\.lmdb \(sizes present: 16, 32\)"):
        LMDBImages(tmp_path / "x.lmdb", 64)


def test_open_dataset_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "folder", n=2)
    assert isinstance(open_dataset(str(tmp_path / "folder"), 16), ImageFolder)

    with zipfile.ZipFile(tmp_path / "f.zip", "w") as zf:
        zf.writestr("a.png", encoded(smooth_rgb(20, 20)))
    assert isinstance(open_dataset(str(tmp_path / "f.zip"), 16), ZipImages)

    # An LMDB directory is recognised by its data.mdb, whatever its name.
    prepare_lmdb(tmp_path / "folder", tmp_path / "plain_dir", [16], workers=0, progress=False)
    ds = open_dataset(str(tmp_path / "plain_dir"), 16, flip=False)
    assert isinstance(ds, LMDBImages) and not ds.flip

    calls = []

    class FakeSynthetic:
        def __init__(self, name, size, length, seed, flip):
            calls.append((name, size, length, seed, flip))

    fake_module = types.SimpleNamespace(SyntheticFaces=FakeSynthetic)
    monkeypatch.setitem(sys.modules, "toonlab.synthetic", fake_module)
    open_dataset("synthetic:toon", 64)
    open_dataset("synthetic:toon:128", 32, flip=False)
    assert calls == [("toon", 64, 70000, 0, True), ("toon", 32, 128, 0, False)]
    with pytest.raises(DatasetError, match="synthetic"):
        open_dataset("synthetic:toon:lots", 32)

    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(DatasetError, match=r"unknown dataset format: .*data\.csv"):
        open_dataset(str(tmp_path / "data.csv"), 16)


def test_missing_and_empty_datasets(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    for spec in (missing, tmp_path / "nope.zip", tmp_path / "nope.lmdb"):
        with pytest.raises(DatasetError, match=f"dataset not found: {spec}"):
            open_dataset(str(spec), 16)
    with pytest.raises(DatasetError, match=f"dataset not found: {missing}"):
        ImageFolder(missing, 16)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images here")
    with pytest.raises(DatasetError, match=f"no images found in {empty}"):
        open_dataset(str(empty), 16)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.md", b"x")
    with pytest.raises(DatasetError, match=f"no images found in {tmp_path / 'empty.zip'}"):
        open_dataset(str(tmp_path / "empty.zip"), 16)
    with pytest.raises(DatasetError, match=f"no images found in {empty}"):
        prepare_lmdb(empty, tmp_path / "o.lmdb", [16], progress=False)
    assert not (tmp_path / "o.lmdb").exists()
    # All messages are one line.
    with pytest.raises(DatasetError) as info:
        ImageFolder(empty, 16)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- flips


def test_flip_only_when_asked(tmp_path: Path) -> None:
    smooth_rgb(16, 16).save(tmp_path / "a.png")
    plain = to_tensor(load_image(tmp_path / "a.png"))
    assert not torch.equal(plain, plain.flip(2))  # the test image is asymmetric

    ds = ImageFolder(tmp_path, 16, flip=False)
    torch.manual_seed(0)
    assert all(torch.equal(ds[0], plain) for _ in range(20))

    ds = ImageFolder(tmp_path, 16)  # flip defaults to True
    torch.manual_seed(0)
    outs = [ds[0] for _ in range(40)]
    n_flipped = sum(torch.equal(o, plain.flip(2)) for o in outs)
    n_plain = sum(torch.equal(o, plain) for o in outs)
    assert n_flipped + n_plain == 40 and 5 < n_flipped < 35


# --------------------------------------------------------------------------- decoding


def _pixel(img: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return img.getpixel(xy)


def test_grayscale_and_bilevel() -> None:
    img = load_image(encoded(Image.new("L", (4, 4), 77)))
    assert _pixel(img) == (77, 77, 77)
    img = load_image(encoded(Image.new("1", (4, 4), 1)))
    assert _pixel(img) == (255, 255, 255)


def test_palette_with_transparency() -> None:
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)  # index 0 black, 1 red
    p.putpixel((1, 1), 1)
    for fmt in ("PNG", "GIF"):
        img = load_image(encoded(p, fmt, transparency=0))
        assert _pixel(img, (0, 0)) == (255, 255, 255)  # transparent index -> white, not black
        assert _pixel(img, (1, 1)) == (200, 10, 10)
    assert _pixel(load_image(encoded(p))) == (0, 0, 0)  # no transparency: palette colour


def test_alpha_composited_onto_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent *black*
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 255, 128))
    img = load_image(encoded(rgba))
    assert _pixel(img, (0, 0)) == (255, 255, 255)
    assert _pixel(img, (1, 1)) == (255, 0, 0)
    r, g, b = _pixel(img, (2, 2))
    assert abs(r - 127) <= 2 and abs(g - 127) <= 2 and b == 255
    la = Image.new("LA", (4, 4), (0, 0))
    assert _pixel(load_image(encoded(la))) == (255, 255, 255)


def test_cmyk() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red ink-wise
    for fmt in ("JPEG", "TIFF"):
        r, g, b = _pixel(load_image(encoded(cmyk, fmt, **({"quality": 100} if fmt == "JPEG" else {}))))
        assert r > 240 and g < 15 and b < 15, fmt


def test_sixteen_bit_scaled_not_clipped(tmp_path: Path) -> None:
    arr = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    expected = [0, 128, 255, 4]
    img16 = Image.fromarray(arr)
    assert img16.mode == "I;16"
    img = load_image(encoded(img16, "PNG"))
    assert [img.getpixel((x, 0))[0] for x in range(4)] == expected
    big_endian = Image.frombytes("I;16B", (4, 1), arr.astype(">u2").tobytes())
    img = load_image(encoded(big_endian, "TIFF"))
    assert [img.getpixel((x, 0)) for x in range(4)] == [(v, v, v) for v in expected]
    mode_i = img16.convert("I")
    img = load_image(encoded(mode_i, "TIFF"))
    assert [img.getpixel((x, 0))[0] for x in range(4)] == expected


def test_ycbcr() -> None:
    src = Image.new("RGB", (8, 8), (30, 160, 220))
    img = load_image(encoded(src.convert("YCbCr"), "JPEG", quality=100))
    assert all(abs(a - b) <= 3 for a, b in zip(_pixel(img), (30, 160, 220)))


def test_exif_orientation(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, left half red, right half blue; orientation 6 means
    # "rotate 90° clockwise to display", so the displayed image is 20 x 40 with red on top.
    raw = Image.new("RGB", (40, 20), (0, 0, 255))
    raw.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    raw.save(path, quality=100, exif=exif)
    img = load_image(path)
    assert img.size == (20, 40)
    top, bottom = _pixel(img, (10, 5)), _pixel(img, (10, 35))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_load_image_errors(tmp_path: Path) -> None:
    bad = add_bad_files(tmp_path)
    for key, reason in (("zero", "zero-byte"), ("truncated", "truncated"), ("text", "not an image")):
        with pytest.raises(ImageError, match=reason) as info:
            load_image(bad[key])
        msg = str(info.value)
        assert msg.startswith(str(bad[key])) and "\n" not in msg
        assert isinstance(info.value, ValueError)
    with pytest.raises(ImageError, match="x.png"):
        load_image(tmp_path / "x.png")  # missing
    png = encoded(smooth_rgb(32, 32))
    with pytest.raises(ImageError, match="<bytes>"):
        load_image(png[: len(png) - 60])  # truncated PNG, from bytes


def test_resize_center_crop() -> None:
    img = Image.new("RGB", (100, 50))
    img.paste((255, 255, 255), (25, 0, 75, 50))  # white centre square
    out = resize_center_crop(img, 20)
    assert out.size == (20, 20)
    assert min(np.asarray(out).ravel()) > 200  # crop kept the centre
    assert resize_center_crop(Image.new("RGB", (10, 30)), 16).size == (16, 16)  # upscales


# --------------------------------------------------------------------------- bad files


def test_bad_files_skipped_warned_listed(tmp_path: Path) -> None:
    good = make_folder(tmp_path, n=3)
    bad = add_bad_files(tmp_path)
    with pytest.warns(UnreadableImageWarning, match="zero.png"):
        ds = ImageFolder(tmp_path, 16)
    assert ds.skipped == [str(bad["zero"])]  # zero-byte dropped at scan time
    assert len(ds) == 5  # 3 good + truncated + text (found only when decoded)

    with pytest.warns(UnreadableImageWarning) as record:
        items = [ds[i] for i in range(len(ds))]
    assert all(t.shape == (3, 16, 16) for t in items)
    messages = [str(w.message) for w in record]
    assert any("truncated.jpg" in m for m in messages) and any("text.jpg" in m for m in messages)
    assert sorted(ds.skipped) == sorted(str(p) for p in bad.values())

    # Bad items resolve to the next readable one (wrapping), and warn only once.
    order = ds.files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i, path in enumerate(order):
            if path in bad.values():
                following = [(i + k) % len(order) for k in range(1, len(order) + 1)]
                j = next(k for k in following if order[k] in good)
                ds.flip = False
                assert torch.equal(ds[i], ds[j])


def test_all_unreadable(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("nope")
    (tmp_path / "b.png").write_text("nope")
    ds = ImageFolder(tmp_path, 16)
    with pytest.warns(UnreadableImageWarning), pytest.raises(DatasetError, match="no readable images"):
        ds[0]


def test_bad_zip_members(tmp_path: Path) -> None:
    zpath = tmp_path / "f.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("a.png", encoded(smooth_rgb(20, 20)))
        zf.writestr("b.jpg", b"")
        zf.writestr("c.jpg", b"garbage")
    with pytest.warns(UnreadableImageWarning, match="b.jpg"):
        ds = ZipImages(zpath, 16)
    with pytest.warns(UnreadableImageWarning, match="c.jpg"):
        check_batch(ds[1], 16)
    assert ds.skipped == [f"{zpath}:b.jpg", f"{zpath}:c.jpg"]


def test_prepare_skips_without_holes(tmp_path: Path) -> None:
    make_folder(tmp_path / "src", n=3)
    bad = add_bad_files(tmp_path / "src")
    with pytest.warns(UnreadableImageWarning):
        report = prepare_lmdb(tmp_path / "src", tmp_path / "o.lmdb", [16], workers=0, progress=False)
    assert report.written == 3
    assert sorted(report.skipped) == sorted(str(p) for p in bad.values())
    assert "truncated" in report.reasons[str(bad["truncated"])]
    ds = LMDBImages(tmp_path / "o.lmdb", 16)
    assert len(ds) == 3
    for i in range(3):  # keys 0..2 all present
        check_batch(ds[i], 16)
    assert ds.skipped == []


# --------------------------------------------------------------------------- loader


def test_infinite_loader(tmp_path: Path) -> None:
    make_folder(tmp_path, n=5)
    ds = ImageFolder(tmp_path, 8, flip=False)
    it = infinite_loader(ds, batch_size=2, workers=0, seed=1)
    batches = [next(it) for _ in range(7)]  # 2 full batches per epoch (drop_last) -> crosses epochs
    assert all(b.shape == (2, 3, 8, 8) for b in batches)
    again = infinite_loader(ds, batch_size=2, workers=0, seed=1)
    assert all(torch.equal(a, next(again)) for a in batches)  # seeded: reproducible
    with pytest.raises(DatasetError, match="batch size"):
        next(infinite_loader(ds, batch_size=6, workers=0, seed=0))


def test_infinite_loader_distributed(tmp_path: Path) -> None:
    import torch.distributed as dist

    for i in range(8):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(tmp_path / f"{i}.png")
    ds = ImageFolder(tmp_path, 8, flip=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        it = infinite_loader(ds, batch_size=8, workers=0, seed=0, distributed=True)
        epochs = [next(it)[:, 0, 0, 0] for _ in range(3)]
    finally:
        dist.destroy_process_group()
    for e in epochs:  # each pass is a full permutation ...
        assert sorted(e.tolist()) == sorted(epochs[0].tolist())
    assert not (torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[1], epochs[2]))  # ... reshuffled


# --------------------------------------------------------------------------- prepare: atomicity


def test_prepare_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "src", n=4)
    real = prep._encode_one
    calls = {"n": 0}

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash mid-job")
        return real(job)

    monkeypatch.setattr(prep, "_TXN_IMAGES", 1)  # make sure data was committed before the crash
    monkeypatch.setattr(prep, "_encode_one", flaky)
    out = tmp_path / "o.lmdb"
    with pytest.raises(RuntimeError, match="simulated"):
        prepare_lmdb(tmp_path / "src", out, [16], workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # neither OUT nor OUT.tmp-*

    # With overwrite, a failing rebuild leaves the previous LMDB intact.
    monkeypatch.setattr(prep, "_encode_one", real)
    prepare_lmdb(tmp_path / "src", out, [16], workers=1, progress=False)
    before = (out / "data.mdb").read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(prep, "_encode_one", flaky)
    with pytest.raises(RuntimeError):
        prepare_lmdb(tmp_path / "src", out, [32], workers=1, progress=False, overwrite=True)
    assert (out / "data.mdb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.lmdb", "src"]


def test_prepare_refuses_existing_and_grows_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "src", n=4)
    out = tmp_path / "o.lmdb"
    out.mkdir()
    with pytest.raises(PrepareError, match="already exists"):
        prepare_lmdb(tmp_path / "src", out, [16], progress=False)
    # A deliberately tiny initial map must grow instead of failing.
    monkeypatch.setattr(prep, "_estimate_map_size", lambda n, sizes: 32 * 1024)
    report = prepare_lmdb(tmp_path / "src", out, [64, 128], workers=0, progress=False, overwrite=True)
    assert report.written == 4 and len(LMDBImages(out, 128)) == 4
    check_batch(LMDBImages(out, 128)[3], 128)


# --------------------------------------------------------------------------- CLI


def test_cli_success_and_errors(tmp_path: Path) -> None:
    make_folder(tmp_path / "src", n=3)
    (tmp_path / "src" / "empty.png").write_bytes(b"")
    out = tmp_path / "o.lmdb"
    runner = CliRunner()
    args = [str(tmp_path / "src"), "--out", str(out), "--size", "32,16", "--workers", "0"]
    res = runner.invoke(prepare_cli, args)
    assert res.exit_code == 0, res.output
    assert "wrote 3 images × 2 sizes (16, 32)" in res.stdout
    assert f"skipped 1: {tmp_path / 'src' / 'empty.png'}" in res.stdout
    assert len(LMDBImages(out, 32)) == 3

    res = runner.invoke(prepare_cli, args)  # existing OUT refused
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "already exists" in res.stderr

    res = runner.invoke(prepare_cli, args + ["--overwrite"])
    assert res.exit_code == 0, res.output

    missing = tmp_path / "missing"
    res = runner.invoke(prepare_cli, [str(missing), "--out", str(tmp_path / "x.lmdb")])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"Error: dataset not found: {missing}"
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback

    for bad in ("100", "4", "abc", ","):
        res = runner.invoke(prepare_cli, [str(tmp_path / "src"), "--out", str(tmp_path / "y.lmdb"),
                                          "--size", bad])
        assert res.exit_code == 2 and "--size" in res.stderr, bad
    assert not (tmp_path / "x.lmdb").exists() and not (tmp_path / "y.lmdb").exists()


@pytest.mark.slow  # a fresh interpreter importing torch: a few seconds on two cores
def test_cli_runs_as_script_from_checkout(tmp_path: Path) -> None:
    """`python stylegan2/prepare_data.py ...` works from any cwd (sys.path bootstrap) with a worker pool."""
    make_folder(tmp_path / "src", n=3)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stylegan2" / "prepare_data.py"), "src", "--out", "o.lmdb",
         "--size", "16", "--workers", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote 3 images × 1 size (16) to o.lmdb")
    assert len(LMDBImages(tmp_path / "o.lmdb", 16)) == 3
