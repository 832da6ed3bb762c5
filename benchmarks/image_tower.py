"""The image tower's defaults across demo worlds: forget the removed faces, keep everyone and everything else.

    python benchmarks/image_tower.py --size full --world_seed 1 --removed 5 16 --seeds 42 7 --json rows.jsonl
    python benchmarks/image_tower.py --table rows.jsonl

Each row: the first ``k`` detected members of a cached demo world removed with ``examples/unlearn.py``'s settings
for the demo (``DEMO_VISION_SETTINGS`` over the library's defaults; ``--set field=json`` changes one), the image
tower alone or ``both`` (the text tower with the demo's text settings, as the script; ``--text_set field=json``
changes one). The default edits the demo CLIP with gated neurons (``image_method="auto"``); ``--set
image_method='"fine_tune"'`` trains it, as the rows before the thirty-third session did without it. Measured on
pictures no training used (the ``eval`` split): the IDIA's TPR on the removed people, the other members it found
before and after, zero-shot accuracy with its paired 95 % half-width in points
(``--zero_shot_per_class`` draws more held-out pictures to narrow it), and the image-to-image attack (the ``eval``
pictures against the ``train`` ones).
``--trajectory N`` also measures the model being trained every N steps (``trajectory`` in the JSON row: the TPR on
the removed people's ``eval`` and ``train`` pictures, the other members found before still found, zero-shot change in
points): when a stop would have been safe. ``--face_images_per_person N`` gives training only each removed person's
first ``N`` pictures, as a user with a few photos would. Pass ``--threads 1`` and pin two runs to two cores to run
them side by side.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import tempfile
import time
from typing import NamedTuple

import torch
from transformers import TrainerCallback

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS, demo_text_settings, load_demo_clip
from clip_backdoor_unlearn.demo.world import WORLD_SIZES, DemoWorld
from clip_backdoor_unlearn.evaluation import identity_inference_attack, paired_accuracy_change, zero_shot_hits

COLUMNS = ("encoder", "size", "world", "removed", "seed", "tpr_after", "others_before", "others_after",
           "zero_shot_before", "zero_shot_after", "zero_shot_ci95", "i2i_removed_after", "i2i_others_before",
           "i2i_others_after", "train_s")


def zero_shot_set(size: str, world_seed: int, world: DemoWorld, per_class: list[int] | None):
    """The world's held-out zero-shot pictures, or ``per_class`` = [shapes, digits] of them (evaluation-only
    fields: the cached CLIP stays the one trained)."""
    if per_class:
        world = DemoWorld.build(size=size, seed=world_seed, shape_eval_per_class=per_class[0],
                                digit_eval_per_class=per_class[1])
    return world.zero_shot()


class Baseline(NamedTuple):
    """A cached demo CLIP before any edit: what every image-tower benchmark measures against."""

    model: torch.nn.Module
    processor: object
    world: DemoWorld
    faces: dict
    before: object  # the IDIA on the ``eval`` pictures
    removed: list[str]  # the first ``count`` members that attack detects
    pictures: object  # the zero-shot pictures
    hits_before: torch.Tensor


def baseline(size: str, world_seed: int, count: int, zero_shot_per_class: list[int] | None) -> Baseline:
    """The cached CLIP of ``(size, world_seed)``, the IDIA on its ``eval`` pictures, the first ``count`` members it
    detects (the people to remove) and its zero-shot hits."""
    model, processor, world = load_demo_clip(size, world_seed)
    faces = world.faces()
    before = identity_inference_attack(model, processor, faces["eval"], world.candidate_names)
    removed = [name for name in world.member_names if before.detected[name]][:count]
    pictures = zero_shot_set(size, world_seed, world, zero_shot_per_class)
    hits_before = zero_shot_hits(model, processor, pictures, templates=world.zero_shot_templates)[1]
    return Baseline(model, processor, world, faces, before, removed, pictures, hits_before)


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """``--size``, ``--world_seed``, ``--removed`` (one count) and ``--seed``: the cell a one-run probe measures."""
    parser.add_argument("--size", default="full", choices=sorted(WORLD_SIZES))
    parser.add_argument("--world_seed", type=int, default=0)
    parser.add_argument("--removed", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)


class Trajectory(TrainerCallback):
    """Every ``every`` steps: the attack on the removed people's fresh and training pictures, the other members it
    found before that it still finds, and the zero-shot change (points), on the model being trained. Rows hold counts
    and rates, never a name."""

    def __init__(self, every, processor, world, removed, pictures, hits_before, before):
        self.every, self.processor, self.world, self.pictures = every, processor, world, pictures
        self.removed, self.hits_before, self.rows = removed, hits_before, []
        gone = set(removed)
        self.others = [name for name in world.member_names if before.detected[name] and name not in gone]
        self.trained_pictures = world.faces()["train"].filter(lambda name: name in gone, input_columns=["name"])

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every or model is None:
            return
        model.eval()
        with torch.no_grad():
            fresh = identity_inference_attack(model, self.processor, self.world.faces()["eval"],
                                              self.world.candidate_names)
            trained = identity_inference_attack(model, self.processor, self.trained_pictures,
                                                self.world.candidate_names)
            hits = zero_shot_hits(model, self.processor, self.pictures, templates=self.world.zero_shot_templates)[1]
        model.train()
        self.rows.append({
            "step": state.global_step, "tpr_eval": fresh.tpr(self.removed), "tpr_train": trained.tpr(self.removed),
            "others": sum(fresh.detected[name] for name in self.others),
            "zero_shot_change": round(100 * float(hits.float().mean() - self.hits_before.float().mean()), 2)})


def first_of_each(keys, count: int) -> list[int]:
    """Indices of the first ``count`` rows of each distinct key in ``keys``, in order."""
    seen: dict = {}
    keep = []
    for index, key in enumerate(keys):
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= count:
            keep.append(index)
    return keep


def first_per_person(face_images, count: int):
    """The first ``count`` pictures of each person in ``face_images`` (columns ``image``, ``name``), in order."""
    return face_images.select(first_of_each(face_images["name"], count))


def unlearn_cell(cell: Baseline, seed: int, encoder: str, overrides: dict, lora_r: int = 0,
                 face_images_per_person: int = 0, text_overrides: dict | None = None,
                 callbacks: list | None = None) -> tuple[BackdoorUnlearner, float]:
    """Remove ``cell.removed`` from a copy of ``cell.model`` as ``examples/unlearn.py`` does for the demo: the
    unlearner and the seconds ``unlearn`` took."""
    model, processor, world, removed = cell.model, cell.processor, cell.world, cell.removed
    output_dir = tempfile.mkdtemp(prefix="bench-image-tower-")
    common = dict(output_dir=output_dir, disable_tqdm=True, report_to="none", seed=seed)
    vision_args = VisionBackdoorTrainingArguments(**{**common, **DEMO_VISION_SETTINGS, **overrides})
    inputs: dict = dict(world.vision_unlearning_inputs(removed))
    if face_images_per_person:
        inputs["face_images"] = first_per_person(inputs["face_images"], face_images_per_person)
    if encoder == "both":  # as examples/unlearn.py: the demo's text settings, every 7th caption held out, pool kept
        captions = world.unlearning_captions()
        text_settings = demo_text_settings(world.size, len(removed), vision_args.image_method)
        text_args = BackdoorTrainingArguments(**common, **{**text_settings, **(text_overrides or {})})
        inputs.update(args=text_args, vision_args=vision_args,
                      captions=[caption for index, caption in enumerate(captions) if index % 7],
                      kept_names=[name for name in world.candidate_names if name not in set(removed)])
    else:
        inputs["args"] = vision_args
    unlearner = BackdoorUnlearner(copy.deepcopy(model), processor)
    if lora_r:  # the library's adapter defaults (ADAPTER_DEFAULTS) apply to the fields the demo leaves unset
        from peft import LoraConfig

        inputs["peft_config"] = LoraConfig(r=lora_r, lora_alpha=2 * lora_r)
    start = time.perf_counter()
    try:
        unlearner.unlearn(removed, encoder=encoder, output_dir=output_dir, disable_tqdm=True,
                          callbacks=callbacks or [], **inputs)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    return unlearner, time.perf_counter() - start


def run(size: str, world_seed: int, count: int, seed: int, encoder: str, overrides: dict, lora_r: int = 0,
        zero_shot_per_class: list[int] | None = None, trajectory: int = 0, face_images_per_person: int = 0,
        text_overrides: dict | None = None) -> dict:
    cell = baseline(size, world_seed, count, zero_shot_per_class)
    model, processor, world, faces, before, removed, pictures, hits_before = cell
    templates = world.zero_shot_templates
    callbacks = [Trajectory(trajectory, processor, world, removed, pictures, hits_before, before)] if trajectory else []
    unlearner, seconds = unlearn_cell(cell, seed, encoder, overrides, lora_r, face_images_per_person, text_overrides,
                                      callbacks)
    metrics = unlearner.evaluate(
        removed, face_images=faces["eval"], gallery_images=faces["train"], candidate_names=world.candidate_names,
        non_member_names=world.non_member_names, idia_before=before,
    )
    hits_after = zero_shot_hits(unlearner.model, processor, pictures, templates=templates)[1]
    half_width = paired_accuracy_change(hits_before, hits_after)[1]
    shapes = torch.tensor(pictures["label"]) < len(world.shape_classes)  # the shapes' classes come first
    by_kind = {kind: [round(100 * value, 2) for value in paired_accuracy_change(hits_before[rows], hits_after[rows])]
               for kind, rows in (("shapes", shapes), ("digits", ~shapes))}
    return {
        "encoder": encoder, "size": size, "world": world_seed, "removed": len(removed), "seed": seed,
        "overrides": {**overrides, **({"lora_r": lora_r} if lora_r else {}),
                      **({"text": text_overrides} if text_overrides else {}),
                      **({"face_images_per_person": face_images_per_person} if face_images_per_person else {})},
        "tpr_after": metrics["idia_tpr_removed_after"],
        "others_before": metrics["idia_others_detected_before"],
        "others_after": metrics["idia_others_detected_after"],
        "zero_shot_before": float(hits_before.float().mean()), "zero_shot_after": float(hits_after.float().mean()),
        "zero_shot_ci95": round(100 * half_width, 2), "zero_shot_pictures": len(hits_before),
        "zero_shot_changed": int((hits_before != hits_after).sum()),
        "zero_shot_change_by_kind": by_kind,
        "i2i_removed_after": metrics["image_retrieval_tpr_removed_after"],
        "i2i_others_before": metrics["image_retrieval_tpr_others_before"],
        "i2i_others_after": metrics["image_retrieval_tpr_others_after"], "train_s": round(seconds, 1),
        **({"trajectory": callbacks[0].rows} if trajectory else {}),
    }


def emit(row: dict, path: str | None) -> None:
    """Print ``row`` as JSON and append it to ``path`` (JSON lines), if given."""
    print(json.dumps(row), flush=True)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    """One line per run, then per (encoder, size, removed) the worst run against the issue's bars."""
    lines = [" | ".join(COLUMNS), " | ".join("---" for _ in COLUMNS)]
    lines += [" | ".join(_cell(row.get(column, "–")) for column in COLUMNS) for row in rows]
    lines += ["", "encoder | size | removed | runs | worst TPR | most others lost (points) | worst zero-shot change "
              "(points) | mean train s", "--- | --- | --- | --- | --- | --- | --- | ---"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["encoder"], row["size"], row["removed"]), []).append(row)
    for (encoder, size, removed), group in groups.items():
        lost = max(100 * (row["others_before"] - row["others_after"]) / row["others_before"] for row in group)
        zero_shot = min(100 * (row["zero_shot_after"] - row["zero_shot_before"]) for row in group)
        lines.append(f"{encoder} | {size} | {removed} | {len(group)} | {max(row['tpr_after'] for row in group):.3f} | "
                     f"{lost:.1f} | {zero_shot:+.1f} | {statistics.mean(row['train_s'] for row in group):.0f}")
    return "\n".join(lines)


def field_values(items: list[str]) -> dict:
    """``FIELD=JSON`` items as a dict of fields."""
    return {key: json.loads(value) for key, value in (item.split("=", 1) for item in items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="full", choices=sorted(WORLD_SIZES))
    parser.add_argument("--world_seed", type=int, default=0)
    parser.add_argument("--removed", type=int, nargs="+", default=[5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--encoders", nargs="+", default=["vision"], choices=("vision", "both"))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="an image-tower argument over the demo's settings, e.g. face_target='\"mean\"'")
    parser.add_argument("--text_set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="with --encoders both, a text-tower argument over the demo's text settings, e.g. "
                             "trainable_parameters='\"name_tokens\"'")
    parser.add_argument("--lora_r", type=int, default=0, help="train a LoRA adapter of this rank (0: the tower)")
    parser.add_argument("--zero_shot_per_class", type=int, nargs=2, metavar=("SHAPES", "DIGITS"),
                        help="held-out zero-shot pictures per shape and per digit class (the world's own if unset; "
                             "more narrow the ± in zero_shot_ci95, points)")
    parser.add_argument("--trajectory", type=int, default=0, metavar="N",
                        help="also measure the model being trained every N steps (slow: an attack and the zero-shot "
                             "set each time; train_s then includes them)")
    parser.add_argument("--face_images_per_person", type=int, default=0, metavar="N",
                        help="train on only each removed person's first N pictures (0: all the world gives)")
    parser.add_argument("--threads", type=int, help="torch threads (1 to run two benchmarks on two cores)")
    parser.add_argument("--json", help="append each row here (JSON lines)")
    parser.add_argument("--table", help="print the table of a --json file and exit")
    options = parser.parse_args()
    if options.table:
        with open(options.table, encoding="utf-8") as handle:
            print(table([json.loads(line) for line in handle if line.strip()]))
        return
    if options.threads:
        torch.set_num_threads(options.threads)
    overrides, text_overrides = field_values(options.set), field_values(options.text_set)
    rows = []
    for encoder in options.encoders:
        for count in options.removed:
            for seed in options.seeds:
                rows.append(run(options.size, options.world_seed, count, seed, encoder, overrides, options.lora_r,
                                options.zero_shot_per_class, options.trajectory, options.face_images_per_person,
                                text_overrides))
                emit(rows[-1], options.json)
    print(table(rows))


if __name__ == "__main__":
    main()
