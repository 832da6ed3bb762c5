"""Unlearning runs on a copy of the session's demo CLIP (the ``demo`` fixture), shared by the demo modules."""

from __future__ import annotations

import copy

from clip_backdoor_unlearn import BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS


def vision_run(demo: dict, output_dir, count: int = 3, **vision_settings):
    """Image-tower unlearning of ``count`` detected members on a copy of the session's demo CLIP, fine-tuned with
    ``DEMO_VISION_SETTINGS`` unless ``vision_settings`` (which update them) say otherwise: the unlearner and the
    removed names."""
    world, before = demo["world"], demo["before"]
    removed = [name for name in world.member_names if before.detected[name]][:count]
    unlearner = BackdoorUnlearner(copy.deepcopy(demo["model"]), demo["processor"])
    args = VisionBackdoorTrainingArguments(output_dir=str(output_dir), disable_tqdm=True, report_to="none",
                                           **{**DEMO_VISION_SETTINGS, "image_method": "fine_tune", **vision_settings})
    unlearner.unlearn(removed, encoder="vision", args=args, **world.vision_unlearning_inputs(removed))
    return unlearner, removed


def evaluate_run(demo: dict, unlearner: BackdoorUnlearner, removed: list[str]) -> dict:
    """The unlearner's metrics on the demo's evaluation faces and zero-shot set, against the attack before."""
    world = demo["world"]
    return unlearner.evaluate(removed, face_images=demo["faces"], candidate_names=world.candidate_names,
                              idia_before=demo["before"], zero_shot_dataset=world.zero_shot(),
                              zero_shot_templates=world.zero_shot_templates)


def assert_rest_kept(metrics: dict, zero_shot_points: float = 2) -> None:
    assert metrics["idia_collateral_rate"] <= 0.1  # of the others detected before, at most 10 % lost
    assert metrics["zero_shot_accuracy_after"] >= metrics["zero_shot_accuracy_before"] - zero_shot_points / 100
