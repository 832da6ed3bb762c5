"""``encoder="both"`` as the demo regressions run it: the image tower edited once, the text tower on top of it.

``both`` equals the image tower, then the text tower in a second run (the towers share no parameter and each trains
against the original model; ``tests/training/test_vision_trainer.py`` checks the weights are the same), so one
image-tower run serves both text targets.
"""

from __future__ import annotations

import copy

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS
from clip_backdoor_unlearn.evaluation import identity_inference_attack


def edit_image_tower(model, processor, demo, num_removed: int, output_dir: str, seed: int, **settings) -> dict:
    """The first ``num_removed`` detected members' faces unlearned by the image tower (``DEMO_VISION_SETTINGS``
    updated by ``settings``); the attack before and after.

    With ``face_target="mean"`` (the paper's target): the anonymous mean face is what lands near "a person". The
    default name target pulls faces nowhere, so it does not show why ``both`` needs pseudonyms; ``both`` keeps them for
    either target. The projection alone is refit (``projection_refit_layers=0``): the layer refit is tested in
    test_vision_trainer.py and on the demo in test_demo_image_tower.py, and added about 75 s to this module."""
    faces = demo.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, demo.candidate_names)
    removed = [name for name in demo.member_names if before.detected[name]][:num_removed]
    assert len(removed) == num_removed
    args = VisionBackdoorTrainingArguments(output_dir=output_dir, seed=seed, disable_tqdm=True, report_to="none",
                                           face_target="mean", projection_refit_layers=0,
                                           **{**DEMO_VISION_SETTINGS, **settings})
    image_tower = BackdoorUnlearner(copy.deepcopy(model), processor)
    image_tower.unlearn(removed, encoder="vision", vision_args=args, **demo.vision_unlearning_inputs(removed))
    vision_only = identity_inference_attack(image_tower.model, processor, faces, demo.candidate_names)
    return {"processor": processor, "world": demo, "faces": faces, "before": before, "removed": removed,
            "image_tower": image_tower.model, "vision_only": vision_only}


def text_on_top(world: dict, output_dir: str, pseudonyms: bool, **settings):
    """The text tower of ``both`` (``settings``: training-argument fields) trained on the edited image tower."""
    demo, removed = world["world"], world["removed"]
    captions = [caption for index, caption in enumerate(demo.unlearning_captions()) if index % 7]
    args = BackdoorTrainingArguments(output_dir=output_dir, disable_tqdm=True, report_to="none", **settings)
    unlearner = BackdoorUnlearner(copy.deepcopy(world["image_tower"]), world["processor"])
    kept = [name for name in demo.candidate_names if name not in set(removed)]
    unlearner.unlearn(removed, encoder="text", captions=captions, args=args, kept_names=kept, pseudonyms=pseudonyms)
    return identity_inference_attack(unlearner.model, world["processor"], world["faces"], demo.candidate_names)


def newly_found(world: dict, after) -> set[str]:
    """Members and non-members the attack finds after and did not find before."""
    demo, before = world["world"], world["before"]
    people = demo.member_names + demo.non_member_names
    return {name for name in people if after.detected[name] and not before.detected[name]}
