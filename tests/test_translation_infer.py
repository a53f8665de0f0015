"""translation/infer.py, video.py and edges.py: sizes, tiling, colour, video + audio, bad inputs, ONNX."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw
from torch import nn

from toonlab.images import rgb_to_yuv
from toonlab.video import count_frames, has_audio, probe, transform_video
from translation import infer
from translation.inference import (
    Translator,
    crop_padding,
    pad_to_multiple,
    size_multiple,
    tile_spans,
    tile_weights,
    translate_image,
    translate_tiled,
)
from translation.onnx_export import export_onnx


class TinyNet(nn.Module):
    """Translation-equivariant stand-in generator: two 3×3 convs, receptive-field radius 2."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.c2(torch.nn.functional.leaky_relu(self.c1(x), 0.2)))


class NormUpNet(nn.Module):
    """Like the v2 generator in the ops ONNX must handle: stride 2, GroupNorm(1), bilinear ×2, tanh."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(1, 8)
        self.out = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        h = torch.nn.functional.leaky_relu(self.norm(self.down(x)), 0.2)
        h = torch.nn.functional.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return torch.tanh(self.out(h))


class _Darken(nn.Module):
    """A generator whose outputs are darker than its inputs (what --match-brightness corrects)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * 0.5 - 0.5


def _img(h: int, w: int, seed: int = 0, lo: int = 0, hi: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Smooth-ish content (upsampled noise) so colours are meaningful, plus a rectangle for edges.
    small = rng.integers(lo, hi, size=(max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))
    return np.ascontiguousarray(img)


def _cpu(G: nn.Module, **kw) -> Translator:
    return Translator(G, device="cpu", precision="fp32", **kw)


@pytest.fixture
def stub_model(monkeypatch):
    """Make the CLI load a TinyNet whatever --ckpt says (the CLI, not the loader, is under test)."""
    monkeypatch.setattr(infer, "load_model", lambda ckpt, device="cpu", which="auto": (TinyNet(), {"model": "tiny"}))


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("hw", [(48, 64), (50, 70), (17, 33), (5, 7), (64, 96)])
def test_round_to_32_and_back_keeps_size_and_pixels(hw):
    x = torch.rand(2, 3, *hw)
    xp, pads = pad_to_multiple(x)
    assert xp.shape[-2] % 32 == 0 and xp.shape[-1] % 32 == 0
    assert xp.shape[-2] - hw[0] < 32 and xp.shape[-1] - hw[1] < 32
    assert torch.equal(crop_padding(xp, pads), x)
    # Through the translator: an identity "generator" must give back the very same pixels,
    # which fails if the crop is off by even one pixel.
    img = _img(*hw, seed=3)
    out = translate_image(_cpu(nn.Identity()), img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, img)
    assert translate_image(_cpu(TinyNet()), img).shape == img.shape


def test_port_generator_runs_at_any_size_like_the_port():
    """Issue 11 item 8: at 250×333 a port-layout v2 through Translator is the port's own forward at
    that size (no padding to 256×352, which changes the GroupNorm statistics)."""
    from tests.test_translation_models import _port_reference, port_state_dict
    from translation.animegan import AnimeGANv2Generator

    sd = port_state_dict(2)
    G = AnimeGANv2Generator().eval()
    G.load_state_dict(sd, strict=True)
    assert size_multiple(G) == 1
    img = _img(250, 333, seed=5)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1)
    with torch.no_grad():
        ref = _port_reference(sd, x)
    assert ref.shape[-2:] == (250, 333) and ref.std() > 1e-3
    tr = _cpu(G)
    torch.testing.assert_close(tr(x), ref, rtol=1e-4, atol=1e-4)
    out = translate_image(tr, img)  # the uint8 path: same as rounding the port's output
    port_u8 = ref[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert out.shape == img.shape and np.abs(out.astype(int) - port_u8.astype(int)).max() <= 1
    # Padding to 32 (the old behaviour, still available) is measurably different here.
    assert (_cpu(G, multiple=32)(x) - ref).abs().max() > 1e-2
    # At 256×256 nothing is padded either way: the two agree.
    x256 = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tr(x256), _port_reference(sd, x256), rtol=1e-4, atol=1e-4)


def test_models_that_need_a_multiple_are_still_padded():
    from translation.animegan import AnimeGANv1Generator, AnimeGANv2Generator
    from translation.cartoongan import CartoonGANGenerator
    from translation.cyclegan_networks import CycleGANGenerator

    assert size_multiple(AnimeGANv1Generator()) == 1
    v2 = AnimeGANv2Generator(lite=True)
    v2.align_corners = False  # the ×2 decoder of the port's test.py
    assert size_multiple(v2) == 4
    assert size_multiple(CartoonGANGenerator()) == size_multiple(CycleGANGenerator(ngf=8, n_blocks=1)) == 4
    assert size_multiple(TinyNet()) == 32  # unknown modules: as before
    for G in (v2, CycleGANGenerator(ngf=8, n_blocks=1)):
        out = translate_image(_cpu(G.eval()), _img(50, 67, seed=1))
        assert out.shape == (50, 67, 3)
    xp, pads = pad_to_multiple(torch.rand(1, 3, 10, 40), 1, min_side=32)  # tiny sides: at least 32
    assert xp.shape[-2:] == (32, 40) and pads == (0, 0, 11, 11)


def test_fused_inference_modules_match_the_network():
    import copy

    from translation.animegan import AnimeGANv2Generator
    from translation.fused import fuse_for_inference

    torch.manual_seed(0)
    G = AnimeGANv2Generator(lite=True).eval()
    for m in G.modules():  # non-trivial norm affines, so a wrong fold of scale/shift shows
        if isinstance(m, nn.GroupNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    fused = fuse_for_inference(copy.deepcopy(G))
    assert not any(isinstance(m, (nn.GroupNorm, nn.ReflectionPad2d)) for m in fused.modules())
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        assert (fused(x) - G(x)).abs().max() < 1e-4
    assert set(fused.state_dict()) >= set(k for k in G.state_dict())  # same names, nothing lost
    tr = _cpu(G, fuse=True, small_plain=True)  # on the CPU fusing is opt-in
    assert any(isinstance(m, nn.GroupNorm) for m in G.modules())  # the caller's module is untouched
    assert tr.G is not G
    tr.small_pixels = 64 * 96 * 2  # this batch goes through the fused module, a single image not
    with torch.no_grad():
        assert (tr(x) - G(x)).abs().max() < 1e-4
        assert (tr(x[:1]) - G(x[:1])).abs().max() < 1e-4


# --------------------------------------------------------------------------- tiling


def test_tile_spans_cover_and_weights_sum_to_one():
    for length, tile, overlap in [(1000, 256, 64), (3000, 1536, 128), (129, 64, 16), (64, 64, 16), (2000, 512, 0)]:
        spans = tile_spans(length, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(e - s <= tile for s, e in spans)
        for (s0, e0), (s1, _) in zip(spans, spans[1:]):
            assert e0 - s1 >= overlap and s1 > s0
        for (_, e0), (s2, _) in zip(spans, spans[2:]):
            assert e0 <= s2  # only neighbours overlap
        total = torch.zeros(length, dtype=torch.float64)
        for (s, e), w in zip(spans, tile_weights(spans)):
            assert w.min() >= 0 and w.max() <= 1
            total[s:e] += w
        assert torch.allclose(total, torch.ones(length, dtype=torch.float64))


def test_tiling_reproduces_untiled_result():
    tr = _cpu(TinyNet())
    img = _img(128, 160, seed=1)
    full = tr(tr.upload(img[None]))[0]
    assert len(tile_spans(128, 64, 32)) > 1 and len(tile_spans(160, 64, 32)) > 1
    tiled = translate_tiled(tr, img, tile=64, overlap=32, batch=3)
    # Overlap/4 = 8 px of every tile edge is discarded, more than the receptive field (2 px): exact.
    assert torch.allclose(tiled, full, atol=1e-5), (tiled - full).abs().max()
    # Tiles cut without overlap show their seams (zero padding at tile edges): the check can fail.
    assert not torch.allclose(translate_tiled(tr, img, tile=64, overlap=0), full, atol=1e-3)

    # Odd sizes through translate_image: the untiled path pads to 32 (reflect), tiles see zero
    # padding at the image border, so compare away from the border.
    img = _img(150, 110, seed=2)
    a = translate_image(tr, img, max_side=4096).astype(int)
    b = translate_image(tr, img, max_side=64, overlap=32).astype(int)
    assert np.abs(a - b)[4:-4, 4:-4].max() <= 1  # uint8 rounding


# --------------------------------------------------------------------------- colour


def test_retain_color_keeps_input_chroma_and_output_luma():
    tr = _cpu(TinyNet(seed=5))
    img = _img(64, 96, seed=4, lo=70, hi=190)  # mid-range colours: no clipping after the swap
    plain = translate_image(tr, img)
    kept = translate_image(tr, img, retain=True)

    def yuv(a):
        return rgb_to_yuv(torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double() / 127.5 - 1)[0]

    yi, yp, yk = yuv(img), yuv(plain), yuv(kept)
    assert (yk[1:] - yi[1:]).abs().max() < 3 / 255  # chroma from the photo
    assert (yk[0] - yp[0]).abs().max() < 3 / 255  # luma from the cartoon
    assert (yp[1:] - yi[1:]).abs().max() > 10 / 255  # ...which really did change the colours

    dark = _cpu(_Darken(TinyNet(seed=5)))
    plain = translate_image(dark, img)
    yp = yuv(plain)
    bright = translate_image(dark, img, brightness=True)
    assert abs(float(yuv(bright)[0].mean() - yi[0].mean())) < 2 / 255
    assert float(yi[0].mean() - yp[0].mean()) > 20 / 255


# --------------------------------------------------------------------------- video


def _clip(path: Path, frames: int = 8, size=(64, 48), fps: float = 12.0) -> Path:
    import cv2

    w, h = size
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for i in range(frames):
        f = np.full((h, w, 3), 40, np.uint8)
        cv2.rectangle(f, (4 + 3 * i, 8), (20 + 3 * i, 30), (30 * i % 255, 200, 90), -1)
        vw.write(f)
    vw.release()
    return path


def _ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def test_video_round_trip_keeps_frames_fps_size(tmp_path, stub_model):
    src = _clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    r = CliRunner().invoke(infer.main, [str(src), "--ckpt", "x.pt", "--out", str(out), "--batch", "3", "-q"])
    assert r.exit_code == 0, r.output
    dst = out / "clip.mp4"
    info = probe(dst)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(12.0, abs=0.01)
    assert count_frames(dst) == 8
    assert not has_audio(dst)
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]  # no temp files left behind


def test_video_audio_track_is_kept(tmp_path):
    exe = _ffmpeg()
    silent = _clip(tmp_path / "silent.mp4", frames=8)
    src = tmp_path / "talk.mp4"
    r = subprocess.run([exe, "-y", "-v", "error", "-i", str(silent), "-f", "lavfi", "-i",
                        "sine=frequency=440:duration=1", "-c:v", "copy", "-c:a", "aac", "-shortest", str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"this ffmpeg cannot make a test clip with audio: {r.stderr[-200:]}")
    assert has_audio(src)
    tr = _cpu(TinyNet())
    res = transform_video(src, tmp_path / "out" / "talk.mp4", lambda f: tr.translate_uint8(f), batch=4,
                          show_progress=False)
    assert res.audio and has_audio(res.path)
    assert count_frames(res.path) == count_frames(src) == res.frames
    # And the frames were really translated, not copied.
    with pytest.raises(AssertionError):
        _assert_same_first_frame(src, res.path)


def _assert_same_first_frame(a: Path, b: Path) -> None:
    from toonlab.video import iter_batches

    fa, fb = next(iter_batches(a, 1))[0].astype(int), next(iter_batches(b, 1))[0].astype(int)
    assert np.abs(fa - fb).mean() < 8


# --------------------------------------------------------------------------- bad inputs


def test_corrupt_inputs_are_skipped_and_listed(tmp_path, stub_model):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(_img(40, 56)).save(src / "good.png")
    Image.fromarray(_img(40, 56, seed=9)).save(src / "sub" / "also good.jpg")
    Image.fromarray(_img(33, 70, seed=8)).save(src / "sub" / "odd.gif")
    (src / "empty.jpg").write_bytes(b"")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (src / "notavideo.mp4").write_bytes(b"this is not a video")
    (src / "readme.txt").write_text("ignored")
    out = tmp_path / "out"
    r = CliRunner().invoke(infer.main, [str(src), "--ckpt", "x.pt", "--out", str(out), "-q", "--batch", "2"])
    assert r.exit_code == 0, r.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["good.png", "sub/also good.jpg", "sub/odd.png"]
    assert Image.open(out / "sub" / "odd.png").size == (70, 33)
    for name in ("empty.jpg", "broken.png", "notavideo.mp4"):
        assert name in r.output
    assert "readme" not in r.output and "skipped 3" in r.output

    # Nothing readable at all: exit code 2 and one error line, no traceback.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_bytes(b"nope")
    r = CliRunner().invoke(infer.main, [str(bad), str(tmp_path / "missing.jpg"), "--ckpt", "x.pt",
                                        "--out", str(tmp_path / "o2"), "-q"])
    assert r.exit_code == 2
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "nothing could be processed: 3 unreadable inputs" in errors[0]
    assert "Traceback" not in r.output
    assert not any(p.is_file() for p in (tmp_path / "o2").rglob("*"))  # no partial outputs


def test_real_loader_end_to_end(tmp_path):
    """With part A's loader: a port-layout v2-lite state dict drives the CLI on a small image."""
    models = pytest.importorskip("translation.models")
    ckpt = tmp_path / "lite.pt"
    torch.manual_seed(0)
    torch.save(models.build_generator("animegan2-lite").state_dict(), ckpt)
    img = tmp_path / "p.jpg"
    Image.fromarray(_img(45, 60)).save(img)
    r = CliRunner().invoke(infer.main, [str(img), "--ckpt", str(ckpt), "--out", str(tmp_path / "o"), "-q",
                                        "--retain-color"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "o" / "p.jpg").size == (60, 45)
    r = CliRunner().invoke(infer.main, [str(img), "--ckpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output


# --------------------------------------------------------------------------- ONNX


def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    G = NormUpNet().eval()
    path = tmp_path / "g.onnx"
    diff = export_onnx(G, path)
    assert path.is_file() and diff < 1e-4
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # dynamic N, H, W
    # A different batch and size than the export's sample still run and match.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 96, 32) * 2 - 1
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - G(x).numpy()).max() < 1e-4


# --------------------------------------------------------------------------- edges CLI


def test_edges_cli_smooths_folder(tmp_path):
    data = pytest.importorskip("translation.data")
    from translation.edges import main as edges_main

    style = tmp_path / "style"
    (style / "b").mkdir(parents=True)
    for i, rel in enumerate(["a.png", "b/c.png", "b/d.jpg"]):
        im = Image.new("RGB", (48, 40), (230, 230, 230))
        ImageDraw.Draw(im).rectangle([10 + i, 8, 30, 28], fill=(20, 40, 200))
        im.save(style / rel)
    (style / "b" / "bad.jpg").write_bytes(b"")
    out = tmp_path / "smooth"
    r = CliRunner().invoke(edges_main, [str(style), "--out", str(out), "--workers", "2", "-q"])
    assert r.exit_code == 0, r.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a.png", "b/c.png", "b/d.jpg"]
    assert "bad.jpg" in r.output and "wrote 3" in r.output
    src = np.asarray(Image.open(style / "a.png"))
    got = np.asarray(Image.open(out / "a.png"))
    assert np.array_equal(got, data.edge_smooth(src))
    assert not np.array_equal(got, src)  # edges were blurred...
    assert np.array_equal(got[:4], src[:4])  # ...flat areas away from them untouched
    r = CliRunner().invoke(edges_main, [str(tmp_path / "nowhere"), "--out", str(out)])
    assert r.exit_code == 2 and "Traceback" not in r.output


# --------------------------------------------------------------------------- CUDA fast path

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_fast_path_matches_cpu(precision):
    from translation.animegan import AnimeGANv2Generator

    torch.manual_seed(0)
    G = AnimeGANv2Generator().eval()
    imgs = np.stack([_img(72, 100, seed=s) for s in range(3)])
    ref = _cpu(G).translate_uint8(imgs)().astype(int)
    got = Translator(G, "cuda", precision).translate_uint8(imgs)().astype(int)
    diff = np.abs(got - ref)
    assert got.shape == ref.shape
    assert diff.mean() < {"fp32": 0.2, "fp16": 0.5, "bf16": 2.0}[precision], diff.mean()
    # Tiled on the GPU agrees with untiled on the GPU away from seams' reach (LayerNorm stats differ).
    big = _img(200, 260, seed=7)
    tr = Translator(G, "cuda", precision)
    a = translate_image(tr, big, max_side=4096).astype(int)
    b = translate_image(tr, big, max_side=128, overlap=32).astype(int)
    assert a.shape == b.shape == big.shape
    assert np.abs(a - b).mean() < 12


@pytest.mark.gpu
@cuda
def test_cuda_video_pipeline_matches_per_frame(tmp_path):
    src = _clip(tmp_path / "clip.mp4", frames=7)
    tr = Translator(TinyNet(), "cuda", "fp32")
    res = transform_video(src, tmp_path / "o.mp4", lambda f: tr.translate_uint8(f), batch=3, show_progress=False)
    assert res.frames == 7 == count_frames(res.path)
    from toonlab.video import iter_batches

    frames = next(iter_batches(src, 7))
    frames = np.concatenate([frames, frames[::-1]])  # 14 frames: batches of 3 reuse every pinned slot
    per_frame = np.stack([tr.translate_uint8(f[None])()[0] for f in frames]).astype(int)
    # The video loop's pattern: batch k+1 is queued before batch k is collected.
    out, pending = [], None
    for i in range(0, len(frames), 3):
        nxt = tr.translate_uint8(frames[i:i + 3])
        if pending is not None:
            out.append(pending())
        pending = nxt
    out.append(pending())
    batched = np.concatenate(out).astype(int)
    assert np.abs(per_frame - batched).max() <= 1  # buffer reuse never mixes frames up (±1: conv algos)
