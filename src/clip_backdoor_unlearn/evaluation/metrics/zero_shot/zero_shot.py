"""Zero-shot classification accuracy (top-1, top-5) as an ``evaluate`` metric.

Inputs, one row per image (``clip_backdoor_unlearn.evaluation.zero_shot.zero_shot_rankings`` makes them):
``predictions`` (class indexes, nearest class first) and ``references`` (the true class index). An image counts as
correct at ``k`` when its class is among the first ``k`` predictions.
"""

from __future__ import annotations

import datasets
import evaluate

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of int): per image, class indexes ranked nearest first (at least max(top_k) long).
    references (list of int): per image, the true class index.
    top_k (list of int): the k to report (default [1, 5]).
Returns:
    top{k}_accuracy for every k.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeroShot(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Radford et al., Learning Transferable Visual Models From Natural Language Supervision (2021)",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int32")),
                                        "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, top_k=(1, 5)):
        return {f"top{k}_accuracy": sum(reference in ranked[:k] for ranked, reference in
                                         zip(predictions, references, strict=True)) / len(references)
                for k in top_k}
