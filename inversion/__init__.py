"""Face alignment, projection of photos into a generator, and SeFa editing.

Placeholder package: inversion lands with its own issue.
"""
