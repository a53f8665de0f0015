"""Face alignment, projection of photos into a generator (optimisation, or an image → W+ encoder
as the result or the start), and SeFa editing."""
