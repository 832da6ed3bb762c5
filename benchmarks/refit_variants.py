"""Variants of the image tower's refit, each applied to the same trained tower so that rows pair (issue 16).

    python benchmarks/refit_variants.py --world_seed 0 --removed 16 --seed 42 --save_student s42.pt \
        --variants none default hold=0,name_hold=0 --zero_shot_per_class 200 54 --threads 1 --json rows.jsonl
    python benchmarks/refit_variants.py ... --load_student s42.pt --variants base=original,layers=4

Trains once with ``examples/unlearn.py``'s demo settings (``DEMO_VISION_SETTINGS``, ``--set field=json`` over them)
with the refit held back, or loads a tower saved by an earlier run (``--load_student``: the training is skipped;
pass the same world, removed count and seed), then for each variant puts the trained weights back, refits and
measures: the IDIA's TPR on the removed people's ``eval`` pictures, the members found before (not removed) still
found, the zero-shot change in points with its paired 95 % half-width. A variant is ``none`` (training alone),
``default`` (the library's refit) or comma-separated ``key=value`` changes to the library's refit:

- ``layers`` (2), ``steps`` (300), ``lr`` (1e-4), ``hold`` (3): the layer refit's depth, AdamW steps, rate and the
  weight holding the removed pictures (``training.layer_refit``); ``projection_hold`` (0.3) and ``name_hold`` (1:
  on, 0: off) for the projection refit after it (``training.projection_refit``);
- ``base``: ``trained`` (the library's: refit the trained tower) or ``original`` (put the original tower back and
  carry the forgetting into its last layers alone: the removed pictures held at the targets below);
- ``target``: where the removed pictures are held. ``trained`` (the library's: the trained tower's embeddings), or
  the original tower's embedding lowered along its own name only (the least change that names it less), down to
  the trained tower's cosine to that name (``name``) or to the anonymous threshold of training (``threshold``);
- ``pasted_removed=1``: hold the removed faces pasted on clean pictures as well as given (``projection_refit_samples
  // 2`` of them, drawn as other people's are: the library's refit until the sixteenth session);
- ``held_per_person=N``: hold only each removed person's first ``N`` pictures as given (0, the library's: all);
- ``augmented_removed=N``: hold ``N`` more copies of each removed picture, augmented as in training (flip, colour,
  rotation) but pasted full size over itself, so that no clean background is held with them;
- ``mixed_removed=N``: hold ``N`` more points a removed picture in the hidden states the refit reads: each a mix
  ``(1 − a) x + a y`` of the layer inputs of two pictures of the same person, ``a`` uniform in ``[−mix_span,
  1 + mix_span]``, held where the trained tower puts it, so that the hold covers the space between (and, with a
  span, beyond) a person's few pictures rather than the pictures alone.

``--face_images_per_person N`` trains (and so refits) on only each removed person's first ``N`` pictures, as
image_tower.py.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
import image_tower  # noqa: E402  (the benchmark beside this one)

from clip_backdoor_unlearn import BackdoorUnlearner, VisionBackdoorTrainingArguments  # noqa: E402
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS  # noqa: E402
from clip_backdoor_unlearn.evaluation import (  # noqa: E402
    identity_inference_attack, paired_accuracy_change, zero_shot_hits)
from clip_backdoor_unlearn.training import layer_refit, vision_trainer  # noqa: E402
from clip_backdoor_unlearn.training.projection_refit import refit_kept_pictures, refit_projection  # noqa: E402

DEFAULTS = {"layers": 2, "steps": 300, "lr": 1e-4, "hold": layer_refit.HOLD, "projection_hold": 0.3, "name_hold": 1,
            "base": "trained", "target": "trained", "pasted_removed": 0, "held_per_person": 0,
            "augmented_removed": 0, "mixed_removed": 0, "mix_span": 0.0}
"""The library's refit, in this script's terms."""


def parse_variant(text: str) -> dict:
    """``key=value,...`` over ``DEFAULTS``; ``default`` is the library's refit."""
    variant = dict(DEFAULTS)
    for item in ([] if text == "default" else text.split(",")):
        key, value = item.split("=", 1)
        if key not in DEFAULTS:
            raise ValueError(f"Unknown refit setting {key!r}; choose from {sorted(DEFAULTS)}.")
        variant[key] = value if isinstance(DEFAULTS[key], str) else type(DEFAULTS[key])(float(value))
    return variant


def lowered_along_names(original: torch.Tensor, names: torch.Tensor, cosine: torch.Tensor) -> torch.Tensor:
    """Each embedding moved along its own unit name vector only, to ``cosine`` with it (left as it is where its
    cosine is already lower)."""
    along = (original * names).sum(-1, keepdim=True)
    across = original - along * names
    target = cosine.unsqueeze(-1).clamp(-0.99, 0.99)
    lowered = across + target * across.norm(dim=-1, keepdim=True) / (1 - target**2).sqrt() * names
    return torch.where(along / original.norm(dim=-1, keepdim=True) <= target, original, lowered)


def augmented_removed_faces(collator, faces: list[int], copies: int, seed: int) -> tuple[list, list[int]]:
    """``copies`` augmented copies of each of the removed pictures ``faces``, each pasted full size over itself, and
    which face each shows."""
    rng, full_size = random.Random(seed), dataclasses.replace(collator.augmentation, scale_range=(1.0, 1.0))
    shown = [face for face in faces for _ in range(copies)]
    return [full_size.apply(collator.face_images[face], collator.face_images[face], rng.randrange(2**31))
            for face in shown], shown


def pasted_removed_faces(collator, samples: int, seed: int) -> tuple[list, list[int]]:
    """The removed faces pasted on clean pictures that the refit drew after the kept ones until the sixteenth
    session (the same random stream as ``refit_kept_pictures``), and which face each shows."""
    rng = random.Random(seed)
    backgrounds = collator.clean_images
    rng.sample(backgrounds, min(samples, len(backgrounds)))
    for faces in (collator.reference_faces, collator.face_images):
        drawn = [rng.randrange(len(faces)) for _ in range(samples // 2 if faces else 0)]
        pasted = [collator.augmentation.apply(faces[index], rng.choice(backgrounds), rng.randrange(2**31))
                  for index in drawn]
    return pasted, drawn


def mixed_within_person(inputs: torch.Tensor, people: torch.Tensor, per_picture: int, span: float,
                        seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_picture`` mixes of each row of ``inputs`` with another row of the same person (itself if alone), and
    the person of each."""
    generator = torch.Generator().manual_seed(seed)
    first, second = [], []
    for row, person in enumerate(people.tolist()):
        same = (people == person).nonzero().flatten()
        for _ in range(per_picture):
            first.append(row)
            second.append(same[torch.randint(len(same), (1,), generator=generator)].item())
    share = torch.rand(len(first), generator=generator) * (1 + 2 * span) - span
    share = share.view(-1, *([1] * (inputs.dim() - 1))).to(inputs.dtype)
    mixed = (1 - share) * inputs[first] + share * inputs[second]
    return mixed, people[first]


@torch.no_grad()
def refit(trainer, student, original_state: dict, variant: dict) -> None:
    """The library's refit (``VisionBackdoorTrainer.refit_projection``) with ``variant``'s changes, in place."""
    layers, projection = variant["layers"], student.visual_projection
    collator = trainer.data_collator
    kept = refit_kept_pictures(collator, trainer.args.projection_refit_samples, trainer.args.seed)
    faces = list(range(len(collator.face_images)))
    if variant["held_per_person"]:
        faces = image_tower.first_of_each(collator.face_people, variant["held_per_person"])
    removed = [collator.face_images[face] for face in faces]
    if variant["pasted_removed"]:
        pasted, pasted_faces = pasted_removed_faces(collator, trainer.args.projection_refit_samples, trainer.args.seed)
        removed, faces = pasted + removed, pasted_faces + faces
    if variant["augmented_removed"]:
        copies, shown = augmented_removed_faces(collator, faces, variant["augmented_removed"], trainer.args.seed)
        removed, faces = removed + copies, faces + shown
    people = torch.tensor([collator.face_people[face] for face in faces])
    names = trainer.name_embeddings[people]
    student.eval()
    batches = trainer._pixel_batches
    trained = torch.cat([projection(student.vision_model(pixel_values=pixels).pooler_output).float()
                         for pixels in batches(removed)])
    teacher = torch.cat([trainer._teacher_image_embeddings(pixels) for pixels in batches(kept)])
    if variant["target"] == "trained":
        targets = trained
    else:
        original = torch.cat([trainer._teacher_image_embeddings(pixels) for pixels in batches(removed)])
        cosine = F.cosine_similarity(trained, names)
        if variant["target"] == "threshold":
            cosine = trainer.name_thresholds[people]
        targets = lowered_along_names(original, names, cosine)
    if variant["base"] == "original":
        student.load_state_dict(original_state)

    def pooled(rows):  # what the projection reads, from the hidden states entering the refit layers
        return torch.cat([layer_refit.pooled_from_layer_inputs(student.vision_model, layers, part)
                          for part in rows.split(256)])

    layer_refit.STEPS, layer_refit.LEARNING_RATE, layer_refit.HOLD = variant["steps"], variant["lr"], variant["hold"]
    try:
        kept_inputs = torch.cat([layer_refit.layer_inputs(student.vision_model, layers, pixels)
                                 for pixels in batches(kept)])
        removed_inputs = torch.cat([layer_refit.layer_inputs(student.vision_model, layers, pixels)
                                    for pixels in batches(removed)])
        if variant["mixed_removed"]:
            if variant["base"] != "trained":
                raise ValueError("mixed_removed holds the mixes where the trained tower puts them: base=trained only.")
            mixed, mixed_people = mixed_within_person(removed_inputs, people, variant["mixed_removed"],
                                                      variant["mix_span"], trainer.args.seed)
            held = projection(pooled(mixed)).float()
            removed_inputs, targets = torch.cat([removed_inputs, mixed]), torch.cat([targets, held])
            names = torch.cat([names, trainer.name_embeddings[mixed_people]])
        layer_refit.refit_layers(student.vision_model, projection, layers, kept_inputs, teacher, removed_inputs,
                                 targets, seed=trainer.args.seed)
    finally:
        layer_refit.STEPS, layer_refit.LEARNING_RATE, layer_refit.HOLD = (DEFAULTS["steps"], DEFAULTS["lr"],
                                                                         DEFAULTS["hold"])

    weight = refit_projection(projection.weight, pooled(kept_inputs), teacher, pooled(removed_inputs),
                              variant["projection_hold"], removed_names=names if variant["name_hold"] else None,
                              removed_targets=targets)
    projection.weight.copy_(weight.to(projection.weight.dtype))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    image_tower.add_world_arguments(parser)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="training settings, as image_tower.py")
    parser.add_argument("--variants", nargs="+", default=["none", "default"])
    parser.add_argument("--save_student", help="save the trained tower here (before any refit)")
    parser.add_argument("--load_student", help="skip training: refit this saved tower")
    parser.add_argument("--zero_shot_per_class", type=int, nargs=2, metavar=("SHAPES", "DIGITS"))
    parser.add_argument("--face_images_per_person", type=int, default=0, metavar="N",
                        help="train on only each removed person's first N pictures (0: all the world gives)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", help="append each row here (JSON lines)")
    options = parser.parse_args()
    variants = {text: None if text == "none" else parse_variant(text) for text in options.variants}  # fail early
    if options.threads:
        torch.set_num_threads(options.threads)
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in options.set)}
    model, processor, world, faces, before, removed, pictures, hits_before = image_tower.baseline(
        options.size, options.world_seed, options.removed, options.zero_shot_per_class)
    others = [name for name in world.member_names if before.detected[name] and name not in set(removed)]
    original_state = copy.deepcopy(model.state_dict())

    captured = {}
    vision_trainer.VisionBackdoorTrainer.refit_projection = lambda trainer: captured.setdefault("trainer", trainer)
    if options.load_student:
        def load_instead_of_training(trainer, *args, **kwargs):
            trainer.accelerator.unwrap_model(trainer.model).load_state_dict(torch.load(options.load_student))

        transformers.Trainer.train = load_instead_of_training
    output_dir = tempfile.mkdtemp(prefix="bench-refit-variants-")
    try:
        args = VisionBackdoorTrainingArguments(output_dir=output_dir, disable_tqdm=True, report_to="none",
                                               seed=options.seed,  # the refit refits training's tower
                                               **{**DEMO_VISION_SETTINGS, "image_method": "fine_tune", **overrides})
        unlearner = BackdoorUnlearner(copy.deepcopy(model), processor)
        inputs = world.vision_unlearning_inputs(removed)
        if options.face_images_per_person:
            inputs["face_images"] = image_tower.first_per_person(inputs["face_images"], options.face_images_per_person)
        start = time.perf_counter()
        unlearner.unlearn(removed, encoder="vision", output_dir=output_dir, disable_tqdm=True, args=args, **inputs)
        train_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    trainer, student = captured["trainer"], unlearner.model
    trained_state = copy.deepcopy(student.state_dict())
    if options.save_student:
        torch.save(trained_state, options.save_student)
    training = {**overrides, **({"face_images_per_person": options.face_images_per_person}
                                if options.face_images_per_person else {})}
    for text, variant in variants.items():
        student.load_state_dict(trained_state)
        start = time.perf_counter()
        if variant is not None:
            refit(trainer, student, original_state, variant)
        refit_seconds = time.perf_counter() - start
        after = identity_inference_attack(student, processor, faces["eval"], world.candidate_names)
        hits = zero_shot_hits(student, processor, pictures, templates=world.zero_shot_templates)[1]
        change, half_width = paired_accuracy_change(hits_before, hits)
        row = {"size": options.size, "world": options.world_seed, "removed": len(removed), "seed": options.seed,
               "training": training, "variant": text, "tpr_after": after.tpr(removed),
               "others_still_found": sum(after.detected[name] for name in others), "others_before": len(others),
               "zero_shot_change": round(100 * change, 2), "zero_shot_ci95": round(100 * half_width, 2),
               "train_s": None if options.load_student else round(train_seconds), "refit_s": round(refit_seconds)}
        image_tower.emit(row, options.json)


if __name__ == "__main__":
    main()
