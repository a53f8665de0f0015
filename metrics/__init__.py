"""Evaluation metrics (layer 4): FID/KID maths, feature extractors, image sources, cached statistics,
LPIPS metrics, the trainer metric hook, the synthetic-domain probes and StarGAN v2's protocol.

    python -m metrics fid data/ gen:G.pt --n 50000        (also: toonlab metrics ...)

Modules: ``fid`` (maths), ``features`` (Inception / random extractors), ``sources`` (datasets,
generators, translators, tensors), ``stats`` (statistics + cache, FID/KID between sources),
``lpips`` (diversity, reconstruction), ``hook`` (periodic metrics while training), ``probes``
(structure regressor / style classifier / sample-quality score), ``stargan2`` (the StarGAN v2 evaluation),
``translation_comparison`` (CartoonGAN vs CycleGAN), ``cli``.
"""

from metrics.features import INCEPTION_FILE, FeatureExtractor, build_feature_extractor
from metrics.fid import MetricError, feature_statistics, frechet_distance, kid
from metrics.lpips import lpips_diversity, reconstruction_metrics
from metrics.sources import DatasetSource, GeneratorSource, ImageSource, TensorSource, TranslatorSource, open_source
from metrics.stats import SourceStats, compare_sources, compute_features, source_statistics

__all__ = [
    "INCEPTION_FILE", "FeatureExtractor", "build_feature_extractor", "MetricError", "feature_statistics",
    "frechet_distance", "kid", "lpips_diversity", "reconstruction_metrics", "DatasetSource", "GeneratorSource",
    "ImageSource", "TensorSource", "TranslatorSource", "open_source", "SourceStats", "compare_sources",
    "compute_features", "source_statistics",
]
