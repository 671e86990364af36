"""Optional Inception-v3 Fréchet distance (the FID of the literature), through torch-fidelity.

Inception was trained on photographs, so on 32 px pixel art the Nouns feature network is the better
ruler; this is for comparing with published numbers. It needs `pip install "condiff[inception]"` and
its weights, which torch-fidelity downloads once; offline and uncached, the row is skipped with a note.
"""

from __future__ import annotations

import torch

from condiff.errors import first_line
from condiff.evaluation import metrics
from condiff.evaluation.held_out import INPUT_SEED, REFERENCE_SEED, held_out_nouns
from condiff.evaluation.report import Report
from condiff.images import to_uint8


class InceptionUnavailable(Exception):
    pass


def inception_features(images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """(N, 2048) pool features of images in [-1, 1]; raises InceptionUnavailable with the reason."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise InceptionUnavailable('torch-fidelity is not installed (pip install "condiff[inception]")') from None
    try:
        extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).eval()
    except Exception as err:  # a failed download surfaces as many exception types
        raise InceptionUnavailable(f"its weights could not be loaded ({type(err).__name__}: "
                                   f"{first_line(err)})") from None
    as_uint8 = torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2)
    with torch.no_grad():
        return torch.cat([extractor(batch)[0] for batch in as_uint8.split(batch_size)])


def add_inception_distance(report: Report, model: str, settings) -> None:
    """Adds an 'Inception FD' column to the row of the report's samples (the last model row: sketch2img's
    last drawing style) and to its real-vs-real row (`report.real_row`), or a note why it could not."""
    try:
        reference = inception_features(held_out_nouns(settings.num, REFERENCE_SEED))
        other_real = inception_features(held_out_nouns(settings.num, INPUT_SEED))
    except InceptionUnavailable as why:
        report.notes.append(f"Inception FD skipped: {why}")
        return
    sampled = [row for row in report.rows if row.name.startswith("model")][-1]
    sampled.metrics["Inception FD"] = metrics.frechet_distance(inception_features(report.samples), reference)
    for row in report.rows:
        if row.name == report.real_row:
            row.metrics["Inception FD"] = metrics.frechet_distance(other_real, reference)
