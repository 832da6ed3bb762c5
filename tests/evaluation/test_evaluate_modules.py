"""The ``evaluate`` modules shipped in the package load offline by path and give the functions' figures."""

from __future__ import annotations

import pytest
from PIL import Image

evaluate = pytest.importorskip("evaluate")

from clip_backdoor_unlearn.evaluation.idia import attack_predictions, identity_inference_attack  # noqa: E402
from clip_backdoor_unlearn.evaluation.metrics import IDIA_METRIC_PATH, ZERO_SHOT_METRIC_PATH  # noqa: E402
from clip_backdoor_unlearn.evaluation.zero_shot import zero_shot_rankings, zero_shot_topk_accuracy  # noqa: E402


def _images(count: int, shade: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), (shade, 20 * index, 255 - shade)) for index in range(count)]


def test_idia_module_votes_like_the_attack(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    faces = {"Ada Lovelace": _images(3, 10), "Zorbo Quill": _images(3, 120), "Mira Fenwick": _images(2, 240)}
    pool = [*faces, "Tom Birch", "Lia Stone"]
    templates = ("a photo of {}", "{}", "a picture of a person named {}")
    for threshold in (1, 2):
        expected = identity_inference_attack(model, processor, faces, pool, templates=templates,
                                             min_correct_prompts=threshold)
        rows = attack_predictions(model, processor, faces, pool, templates=templates)
        figures = evaluate.load(IDIA_METRIC_PATH).compute(**rows, min_correct_prompts=threshold,
                                                          removed_names=["Ada Lovelace"])
        assert figures["tpr"] == expected.tpr()
        assert figures["tpr_removed"] == expected.tpr(["Ada Lovelace"])
        assert figures["num_people"] == 3


def test_zero_shot_module_scores_like_the_function(tiny_model_and_processor):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    model, processor = tiny_model_and_processor
    names = ["dog", "cat", "bird", "car", "tree", "house", "boat"]
    dataset = Dataset.from_dict({"image": _images(14, 60), "label": [index % 7 for index in range(14)]},
                                features=Features({"image": ImageFeature(), "label": ClassLabel(names=names)}))
    expected = zero_shot_topk_accuracy(model, processor, dataset, top_k=(1, 5))
    rankings, labels = zero_shot_rankings(model, processor, dataset, k=5)
    figures = evaluate.load(ZERO_SHOT_METRIC_PATH).compute(predictions=rankings.tolist(), references=labels.tolist())
    assert figures == {"top1_accuracy": expected[1], "top5_accuracy": expected[5]}
