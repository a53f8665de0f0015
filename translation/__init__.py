"""Photo-to-cartoon translators (AnimeGAN v1/v2, CartoonGAN, later CycleGAN and StarGAN v2).

Placeholder package: the translators land with their own issue.
"""
