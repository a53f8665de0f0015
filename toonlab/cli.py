"""The ``toonlab`` command: one group over every tool, and the entry point of every script.

Subcommands are imported by name on use, so ``toonlab --help`` stays fast and a broken optional
dependency of one tool never breaks the others. This module is the one place that may reach every
layer (an *entry point*): a command defined in a lower layer is *composed* here with extensions
from higher ones — the StyleGAN2 trainers get the periodic-metrics options (``metrics/hook.py``),
StarGAN v2 its ``eval`` command (``metrics/stargan2.py``). The scripts users type
(``python stylegan2/train.py …``) end with :func:`run_script`, so both spellings run the same
composed command.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from typing import Sequence

import click


@dataclass(frozen=True)
class Command:
    """Where a command lives (``module:attr``), its one-line help, and the extensions composed in."""

    module: str
    attr: str
    help: str
    extensions: tuple[str, ...] = ()  # "module:function", each taking and returning a click command


_METRICS = ("metrics.hook:extend_training_command",)

# name → command. Each module is also runnable as a script (python stylegan2/train.py ...).
COMMANDS: dict[str, Command] = {
    "generate": Command("stylegan2.generate", "main", "Render images from a StyleGAN2 checkpoint."),
    "prepare": Command("stylegan2.prepare_data", "main", "Pack images into a community-format LMDB."),
    "compare": Command("finetune.compare", "main", "Fine-tune with every method and score structure vs style."),
    "export": Command("stylegan2.export", "main",
                      "Slim snapshot of any model file (.pt, safetensors, NVIDIA .pkl) as .pt or safetensors."),
    "mix": Command("stylegan2.mix", "main", "Style-mixing figure: row seeds x column seeds (+ fine-tuned generators)."),
    "interpolate": Command("stylegan2.interpolate", "main", "Interpolation video between seeds / projected latents."),
    "truncation": Command("stylegan2.truncation", "main", "Truncation sweep grid: seeds x psi."),
    "finetune": Command("finetune.train", "main", "Fine-tune a face StyleGAN2 to a cartoon domain (FreezeSG, ...).",
                        _METRICS),
    "swap": Command("finetune.swap", "main", "Layer swapping: blend two generators into a new checkpoint."),
    "train": Command("stylegan2.train", "main", "Pretrain a StyleGAN2 (resumes by re-running).", _METRICS),
    "align": Command("inversion.align", "main", "Align the face in a photo the FFHQ way (dlib 68 landmarks)."),
    "project": Command("inversion.project", "main",
                       "Project face photos into the generator and render them as cartoons."),
    "encoder": Command("inversion.encoder", "main",
                       "Image → W+ encoder: train it on a generator, apply it to photos (instant inversion).",
                       ("inversion.project:extend_encoder_cli",)),
    "sefa": Command("inversion.sefa", "main", "SeFa closed-form editing directions: factorize, apply."),
    "translate": Command("translation.infer", "main",
                         "Turn photos, folders and videos into cartoons (AnimeGAN/CartoonGAN)."),
    "edges": Command("translation.edges", "main", "Edge-smoothed copies of a style folder (translation data prep)."),
    "translate-train": Command("translation.train", "main",
                               "Train an AnimeGAN/CartoonGAN photo-to-cartoon translator (resumes by re-running)."),
    "stargan2": Command("translation.stargan2", "main", "StarGAN v2 multi-domain translation: train, sample, eval.",
                        ("metrics.stargan2:extend_cli",)),
    "cyclegan": Command("translation.cyclegan", "main",
                        "Train a CycleGAN photo <-> cartoon translator (resumes by re-running)."),
    "translate-compare": Command("metrics.translation_comparison", "main",
                                 "CartoonGAN vs CycleGAN (vs AnimeGANv2): FID and time per epoch."),
    "metrics": Command("metrics.cli", "main", "FID, KID and LPIPS diversity between image sources."),
    "app": Command("toonlab.app", "main", "The face-to-cartoon lab in a browser, on localhost (no internet)."),
}

_LOADED: dict[str, click.Command] = {}


def _resolve(ref: str):  # noqa: ANN202 - "module:attr" → the object
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _guard(cmd: click.Command) -> click.Command:
    """Run ``cmd``'s callback (and its subcommands') inside ``user_errors``.

    Every command already wraps its body; this is the net under them, so an input error or a
    machine fault (full disk, read-only folder) raised outside that block — while printing the
    summary, in an extension — is still one line and exit 2, never a traceback.
    """
    from toonlab.errors import user_errors

    callback = cmd.callback
    if callback is not None and not getattr(callback, "_toonlab_guarded", False):
        @functools.wraps(callback)
        def guarded(*args, **kwargs):  # noqa: ANN202 - the callback's own signature
            with user_errors():
                return callback(*args, **kwargs)

        guarded._toonlab_guarded = True  # type: ignore[attr-defined]
        cmd.callback = guarded
    for sub in getattr(cmd, "commands", {}).values():
        _guard(sub)
    return cmd


def load_command(name: str) -> click.Command:
    """The composed command ``name`` (imported on first use, then cached)."""
    if name not in _LOADED:
        spec = COMMANDS[name]
        cmd = _resolve(f"{spec.module}:{spec.attr}")
        for ext in spec.extensions:
            cmd = _resolve(ext)(cmd)
        cmd.name = name
        _LOADED[name] = _guard(cmd)
    return _LOADED[name]


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return load_command(name) if name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so listing commands imports nothing.
        with formatter.section("Commands"):
            formatter.write_dl([(n, COMMANDS[n].help) for n in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toonlab")
def main() -> None:
    """toonlab — StyleGAN2 cartoon faces: pretrain, fine-tune, project, translate."""


def run_script(name: str, args: Sequence[str] | None = None) -> None:
    """Run command ``name`` as ``python <its script> …`` does (the scripts' ``__main__`` blocks call this)."""
    load_command(name).main(args=list(sys.argv[1:] if args is None else args), prog_name=sys.argv[0])


if __name__ == "__main__":
    main()
