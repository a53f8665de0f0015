"""The ``toonlab`` command: one group over every script's click command.

Subcommands are imported on use, so ``toonlab --help`` stays fast and a broken optional
dependency of one tool never breaks the others.
"""

from __future__ import annotations

import importlib

import click

# name → (module, attribute, one-line help). Each module is also runnable as a script.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("stylegan2.generate", "main", "Render images from a StyleGAN2 checkpoint."),
    "prepare": ("stylegan2.prepare_data", "main", "Pack images into a community-format LMDB."),
    "compare": ("finetune.compare", "main", "Fine-tune with every method and score structure vs style."),
    "export": ("stylegan2.export", "main",
               "Slim snapshot of any model file (.pt, safetensors, NVIDIA .pkl) as .pt or safetensors."),
    "mix": ("stylegan2.mix", "main", "Style-mixing figure: row seeds x column seeds (+ fine-tuned generators)."),
    "interpolate": ("stylegan2.interpolate", "main", "Interpolation video between seeds / projected latents."),
    "truncation": ("stylegan2.truncation", "main", "Truncation sweep grid: seeds x psi."),
    "finetune": ("finetune.train", "main", "Fine-tune a face StyleGAN2 to a cartoon domain (FreezeSG, ...)."),
    "swap": ("finetune.swap", "main", "Layer swapping: blend two generators into a new checkpoint."),
    "train": ("stylegan2.train", "main", "Pretrain a StyleGAN2 (resumes by re-running)."),
    "align": ("inversion.align", "main", "Align the face in a photo the FFHQ way (dlib 68 landmarks)."),
    "project": ("inversion.project", "main", "Project face photos into the generator and render them as cartoons."),
    "sefa": ("inversion.sefa", "main", "SeFa closed-form editing directions: factorize, apply."),
    "translate": ("translation.infer", "main", "Turn photos, folders and videos into cartoons (AnimeGAN/CartoonGAN)."),
    "edges": ("translation.edges", "main", "Edge-smoothed copies of a style folder (translation data prep)."),
    "translate-train": ("translation.train", "main",
                        "Train an AnimeGAN/CartoonGAN photo-to-cartoon translator (resumes by re-running)."),
    "stargan2": ("translation.stargan2", "main", "StarGAN v2 multi-domain translation: train, sample, eval."),
    "cyclegan": ("translation.cyclegan", "main", "Train a CycleGAN photo <-> cartoon translator (resumes by re-running)."),
    "translate-compare": ("translation.compare", "main", "CartoonGAN vs CycleGAN (vs AnimeGANv2): FID and time per epoch."),
    "metrics": ("toonlab.metrics", "main", "FID, KID and LPIPS diversity between image sources."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        cmd = getattr(importlib.import_module(module), attr)
        cmd.name = name
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help from the table, so listing commands imports nothing.
        with formatter.section("Commands"):
            formatter.write_dl([(n, COMMANDS[n][2]) for n in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toonlab")
def main() -> None:
    """toonlab — StyleGAN2 cartoon faces: pretrain, fine-tune, project, translate."""


if __name__ == "__main__":
    main()
