"""The face-to-cartoon pipeline as a library: align → invert → render through every generator.

This is what the web app (``toonlab/app.py``) runs for its Face tab, and what a script can run
without a browser::

    pipe = FacePipeline.load(ckpt=None, cartoons=["toon.pt"])      # bundled source generator
    face = pipe.align(photo)                                        # dlib, FFHQ crop, largest face
    inv = pipe.invert(face.image, refine_steps=50)                  # encoder (+ steps) or projection
    images = pipe.render(inv, Edit(swap=2, truncation=0.8, sefa=(3.0, 0.0, 0.0)))

Inversion uses the encoder (``inversion/encoder.py``) when it is importable and its file exists,
optionally refined by the projector's optimisation started from the encoder's W+; without an
encoder it falls back to projection by optimisation (``inversion/project.py``) alone. Editing
happens in the source's W+ space and is applied alike to the source and every cartoon generator
(they are fine-tuned from the source, so they share its W space):

- truncation ψ pulls every W+ entry towards the source's mean w: ``w̄ + ψ·(w − w̄)``;
- the first SeFa directions (``inversion/sefa.py``) move every entry by ``degree × direction``;
- the layer swap takes blocks 1..k from the source and the rest from the cartoon
  (``stylegan2.blend.feature_swap`` with the source's skip image; k = 0 is the cartoon itself),
  which renders exactly what a hard weight blend at k would, without building one per position.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from inversion.align import NoFaceError, align_face, detect_faces, face_quad
from inversion.project import ProjectConfig, build_perceptual, project
from inversion.sefa import factorize
from stylegan2.blend import feature_swap
from stylegan2.checkpoint import load_generator
from stylegan2.latents import save_latent
from stylegan2.networks import Generator
from stylegan2.sampling import render
from toonlab.errors import UserInputError
from toonlab.images import to_pil, to_tensor
from toonlab.runtime import bundled_generator, pick_device

__all__ = ["MAX_PHOTO_SIDE", "AlignedFace", "Inversion", "Edit", "FacePipeline", "downscale", "generator_name", "load_face_encoder"]

#: Photos with a longer side are downscaled before anything else (detection runs on ≤ 1024 px
#: anyway, and a 50-megapixel upload would otherwise hold ~150 MB per copy).
MAX_PHOTO_SIDE = 2048
#: The aligned crop kept for display (the generator sees it resized to its own size).
ALIGNED_SIZE = 256

Progress = Callable[[float, str], None]


def downscale(photo: Image.Image, max_side: int = MAX_PHOTO_SIDE) -> tuple[Image.Image, str | None]:
    """``photo`` with its longer side at most ``max_side`` (and a note saying so when it was larger)."""
    if max(photo.size) <= max_side:
        return photo, None
    s = max_side / max(photo.size)
    size = (max(1, round(photo.width * s)), max(1, round(photo.height * s)))
    note = f"the photo is {photo.width}×{photo.height}; downscaled to {size[0]}×{size[1]}"
    return photo.resize(size, Image.Resampling.LANCZOS), note


@dataclass
class AlignedFace:
    """The FFHQ-aligned crop of the face used, and what was found."""

    image: Image.Image  # ALIGNED_SIZE² RGB
    n_faces: int
    box: tuple[int, int, int, int]
    notes: list[str] = field(default_factory=list)


@dataclass
class Inversion:
    """A face in the source's W+: latent [1, n_latent, D] and the noise maps (None: constant noise)."""

    latent: Tensor
    noise: list[Tensor] | None
    method: str
    seconds: float


@dataclass(frozen=True)
class Edit:
    """What the sliders say: blocks from the source, truncation ψ, degrees along the SeFa directions."""

    swap: int = 0
    truncation: float = 1.0
    sefa: tuple[float, ...] = ()


def load_face_encoder(path: str | os.PathLike | None, G: Generator, bundled_source: bool = True
                      ) -> tuple[object | None, str]:
    """The image → W+ encoder for ``G`` and a note; ``(None, why)`` when there is none to use.

    An explicit ``path`` that cannot be used (missing module, unreadable file, made for another
    generator shape: a trial encode tells) is an error; the bundled encoder is only for the
    bundled source (``bundled_source``), and its absence only means falling back to optimisation.
    """
    try:
        from inversion.encoder import bundled_encoder_path, encode, load_encoder
    except ImportError:
        if path is not None:
            raise UserInputError(f"--encoder {path}: this installation has no encoder module (inversion/encoder.py)") from None
        return None, "no encoder module: faces are inverted by optimisation"
    if path is None:
        if not bundled_source:
            return None, "no --encoder for this generator (the bundled one is for the bundled source): inverting by optimisation"
        if not Path(bundled_encoder_path()).exists():
            return None, f"no bundled encoder ({Path(bundled_encoder_path()).name}): faces are inverted by optimisation"
    device = G.w_avg.device
    enc = load_encoder(path=path, device=device)
    name = Path(path).name if path is not None else Path(bundled_encoder_path()).name
    try:  # fail now, at start, rather than on every photo
        encode(enc, G, torch.zeros(1, 3, G.size, G.size, device=device))
    except UserInputError as e:
        raise UserInputError(f"--encoder {name}: {str(e).splitlines()[0]}") from None
    return enc, f"encoder {name}"


def generator_name(path: str | os.PathLike) -> str:
    """What the page calls a generator: its file name, or ``run-000800`` for a run's step checkpoint."""
    p = Path(path)
    if p.stem.isdigit() and p.parent.name == "checkpoints":
        return f"{p.parent.parent.name}-{p.stem}"
    return p.stem


class FacePipeline:
    """A source generator, the cartoon generators fine-tuned from it, and the editing directions."""

    def __init__(self, source: Generator, source_path: str | os.PathLike, cartoons: Sequence[tuple[str, Generator]] = (),
                 encoder: object | None = None, n_directions: int = 3, landmarks: str | os.PathLike | None = None,
                 encoder_note: str = "") -> None:
        for name, T in cartoons:
            if T.size != source.size or T.n_latent != source.n_latent or T.style_dim != source.style_dim:
                raise UserInputError(f"--cartoon {name}: a {T.size}-px generator with {T.style_dim}-d styles does not "
                                     f"fit the {source.size}-px, {source.style_dim}-d source (fine-tune it from --ckpt)")
        self.G = source.eval().requires_grad_(False)
        self.source_path = Path(source_path)
        # a/toon.pt and b/toon.pt: toon and toon-2 (the page needs one name per generator)
        named: list[tuple[str, Generator]] = []
        for n, T in cartoons:
            taken = {m for m, _ in named}
            name, k = n, 2
            while name in taken or name == "source":
                name, k = f"{n}-{k}", k + 1
            named.append((name, T.eval().requires_grad_(False)))
        self.cartoons = named
        self.encoder = encoder
        self.encoder_note = encoder_note
        self.landmarks = landmarks
        self.device = source.w_avg.device
        self.w_avg = source.mean_w().detach().clone()  # [1, D]: truncation centre for every generator
        dirs, _ = factorize(source)
        self.directions = dirs[: max(0, n_directions)].to(self.device)
        self._perceptual: tuple[torch.nn.Module | None, bool] | None = None

    @classmethod
    def load(cls, ckpt: str | os.PathLike | None = None, cartoons: Sequence[str | os.PathLike] = (),
             encoder: str | os.PathLike | None = None, device: str = "cpu", n_directions: int = 3,
             landmarks: str | os.PathLike | None = None, use_encoder: bool = True) -> FacePipeline:
        """Load the generators (``ckpt`` None: the bundled source) and the encoder (None: bundled, if any)."""
        dev = pick_device(device)
        path = Path(ckpt) if ckpt is not None else bundled_generator()
        G = load_generator(path, device=dev)
        toons = [(generator_name(c), load_generator(c, device=dev)) for c in cartoons]
        bundled = ckpt is None or path.resolve() == bundled_generator().resolve()
        enc, note = (load_face_encoder(encoder, G, bundled) if use_encoder
                     else (None, "encoder disabled: inverting by optimisation"))
        return cls(G, path, toons, enc, n_directions, landmarks, note)

    # ---- the steps ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.G.size

    @property
    def n_blocks(self) -> int:
        return self.G.n_blocks

    def warm_up(self) -> None:
        """Load dlib's detector and 68-landmark model now (~2-5 s on two cores), not on the first photo.
        A missing dlib or model is left for ``align`` to report."""
        try:
            detect_faces(Image.new("RGB", (32, 32)), self.landmarks)
        except UserInputError:
            pass

    def align(self, photo: Image.Image) -> AlignedFace:
        """Detect faces (dlib) and align the largest one; ``NoFaceError`` when there is none."""
        photo, note = downscale(photo)
        faces = detect_faces(photo, self.landmarks)
        if not faces:
            raise NoFaceError("no face found in the photo: use a photo with a clear, roughly frontal face")
        sides = [face_quad(f)[1] for f in faces]
        i = max(range(len(faces)), key=sides.__getitem__)
        notes = [note] if note else []
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found; using the largest")
        if sides[i] < 64:
            notes.append(f"the face is only {sides[i]:.0f} px across; the result will be blurry")
        return AlignedFace(align_face(photo, faces[i], ALIGNED_SIZE), len(faces), faces[i].box, notes)

    def _perceptual_loss(self) -> tuple[torch.nn.Module | None, bool]:
        """LPIPS-VGG when its weights are on disk; else None (pixel MSE). Built once.

        Not the random-trunk LPIPS the demo falls back to: building a random VGG16 takes ~10 s on
        two CPU cores and triples the time per step, for a small gain at 64 px.
        """
        if self._perceptual is None:
            try:
                self._perceptual = (build_perceptual("lpips", None, self.device), False)
            except UserInputError:
                self._perceptual = (None, True)
        return self._perceptual

    def target(self, aligned: Image.Image) -> Tensor:
        """The aligned crop as the generator's input: [1, 3, size, size] in [-1, 1]."""
        return to_tensor(aligned.convert("RGB").resize((self.size, self.size), Image.Resampling.LANCZOS))[None].to(self.device)

    def invert(self, aligned: Image.Image, refine_steps: int = 0, on_progress: Progress | None = None,
               projection_steps: int = 200) -> Inversion:
        """W+ of the aligned face: the encoder's (+ ``refine_steps`` of optimisation from it), or
        ``projection_steps`` of optimisation from the mean w when there is no encoder."""
        t0 = time.perf_counter()
        report = on_progress or (lambda f, m: None)
        x = self.target(aligned)
        init = None
        if self.encoder is not None:
            from inversion.encoder import encode

            report(0.0, "encoding")
            with torch.no_grad():
                init = encode(self.encoder, self.G, x).to(self.device).float()
            if refine_steps <= 0:
                report(1.0, "encoded")
                return Inversion(init, None, "encoder", time.perf_counter() - t0)
            steps, method = refine_steps, f"encoder + {refine_steps} refinement steps"
        else:
            steps = refine_steps if refine_steps > 0 else projection_steps
            method = f"projection ({steps} steps)"
        percept, no_lpips = self._perceptual_loss()
        if no_lpips:
            method += ", pixel MSE (LPIPS needs torchvision's VGG16 weights on disk)"
        # Noise maps stay fixed on CPUs (half the time per step; at 64 px they add little). From an
        # encoder's W+, project() starts at it with the const noise maps and no latent noise
        # (inversion/project.py, ``init``).
        cfg = ProjectConfig(steps=steps, optimize_noise=self.device.type == "cuda", n_mean_latent=4096)
        report(0.0, method)
        step_report = lambda s, rec: report((s + 1) / steps, method)  # noqa: E731
        if init is None:
            res = project(self.G, x, percept, cfg, show_progress=False, on_step=step_report)
        else:
            res = project(self.G, x, percept, cfg, show_progress=False, on_step=step_report, init=init)
        report(1.0, method)
        return Inversion(res.latent.detach(), [t.detach() for t in res.noise], method, time.perf_counter() - t0)

    def edited_latent(self, inv: Inversion, edit: Edit) -> Tensor:
        """The W+ latent after truncation and the SeFa moves (the swap is a rendering choice)."""
        lat = self.w_avg[:, None] + edit.truncation * (inv.latent.to(self.device) - self.w_avg[:, None])
        if len(edit.sefa) > len(self.directions):
            raise UserInputError(f"{len(edit.sefa)} SeFa degrees given; there are {len(self.directions)} directions")
        for deg, d in zip(edit.sefa, self.directions):
            if deg:
                lat = lat + float(deg) * d
        return lat

    @torch.no_grad()
    def render(self, inv: Inversion, edit: Edit = Edit()) -> dict[str, Image.Image]:
        """``{"source": …, cartoon name: …}``, each ``size``² RGB, with the edit applied to all."""
        if not 0 <= edit.swap <= self.n_blocks:
            raise UserInputError(f"swap {edit.swap}: this {self.size}-px generator has blocks 1..{self.n_blocks} (0 = none)")
        lat = self.edited_latent(inv, edit)
        noise = inv.noise
        out = {"source": to_pil(render(self.G, lat, noise)[0])}
        for name, T in self.cartoons:
            img = render(T, lat, noise) if edit.swap == 0 else feature_swap(self.G, T, lat, edit.swap, noise)
            out[name] = to_pil(img[0].float())
        return out

    def save_latent(self, path: str | os.PathLike, inv: Inversion, edit: Edit = Edit(), source: str | None = None) -> Path:
        """The edited latent as a ``latent.pt`` that ``stylegan2/generate.py --latent`` renders."""
        lat = self.edited_latent(inv, edit)
        settings = {"method": inv.method, "truncation": edit.truncation, "sefa": list(edit.sefa), "size": self.size,
                    "swap": edit.swap}
        return save_latent(path, lat[0], [t[0] for t in inv.noise] if inv.noise is not None else None,
                           self.source_path, settings, source=source)
