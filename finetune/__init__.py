"""Fine-tuning StyleGAN2 to cartoon domains (FreezeSG, FreezeG, FreezeD, structure loss, layer swapping).

Placeholder package: the fine-tuning lab lands with its own issue.
"""
