"""The one loss library shared by StyleGAN2 training, fine-tuning and the translators.

Every loss is a small function of tensors with explicit weights; each names its paper equation.
"""

from .adversarial import d_hinge, d_logistic, d_lsgan, g_hinge, g_lsgan, g_nonsaturating
from .regularizers import lazy_reg_adam_params, noise_regularizer, path_length_penalty, r1_penalty
from .structure import structure_loss

__all__ = [
    "d_logistic",
    "g_nonsaturating",
    "d_lsgan",
    "g_lsgan",
    "d_hinge",
    "g_hinge",
    "r1_penalty",
    "path_length_penalty",
    "lazy_reg_adam_params",
    "noise_regularizer",
    "structure_loss",
]
