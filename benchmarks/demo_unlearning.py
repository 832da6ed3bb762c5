"""Unlearn k detected members of the demo world and measure what changed, for several k and towers.

    python benchmarks/demo_unlearning.py --size full --removed 10 32 --encoders text
    python benchmarks/demo_unlearning.py --size full --removed 5 16 --encoders vision both --json out.json

Attack images are the ``eval`` split of ``faces()``: pictures no training (of the demo CLIP or of the unlearning)
ever used, scored with the 21 IDIA templates, none of which the unlearning trains on. The text tower uses the
paper's defaults unless flags say otherwise; the image tower uses ``DEMO_VISION_SETTINGS``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS, load_demo_clip
from clip_backdoor_unlearn.demo.world import WORLD_SIZES
from clip_backdoor_unlearn.evaluation import identity_inference_attack

COLUMNS = ("encoder", "removed", "tpr_before", "tpr_after", "others_before", "others_after", "non_members_after",
           "zero_shot_before", "zero_shot_after", "sim_backdoor_after", "sim_clean", "sim_target_before",
           "sim_target_after", "train_s")


def run(world, model, processor, before, encoder: str, count: int, text_settings: dict, output_dir: str,
        keep_candidates: bool = False) -> dict:
    removed = [name for name in world.member_names if before.detected[name]][:count]
    unlearner = BackdoorUnlearner(copy.deepcopy(model), processor)
    captions = world.unlearning_captions()
    inputs: dict = {}
    if encoder != "vision":
        # The text tower's settings go in its own arguments: plain keyword overrides would reach the image tower too.
        inputs["args"] = BackdoorTrainingArguments(output_dir=output_dir, disable_tqdm=True, report_to="none",
                                                   **text_settings)
        inputs["captions"] = [caption for index, caption in enumerate(captions) if index % 7]
        if keep_candidates:  # as examples/unlearn.py: everyone else in the attack's pool must stay findable
            inputs["kept_names"] = [name for name in world.candidate_names if name not in set(removed)]
    if encoder != "text":
        vision_args = VisionBackdoorTrainingArguments(output_dir=output_dir, disable_tqdm=True, report_to="none",
                                                      **DEMO_VISION_SETTINGS)
        inputs.update(world.vision_unlearning_inputs(removed))
        inputs["vision_args" if encoder == "both" else "args"] = vision_args
    start = time.perf_counter()
    unlearner.unlearn(removed, encoder=encoder, output_dir=output_dir, disable_tqdm=True, **inputs)
    seconds = time.perf_counter() - start
    metrics = unlearner.evaluate(
        removed, face_images=world.faces()["eval"], candidate_names=world.candidate_names,
        non_member_names=world.non_member_names, idia_before=before, held_out_captions=captions[::7],
        zero_shot_dataset=world.zero_shot(), zero_shot_templates=world.zero_shot_templates,
    )
    return {
        "encoder": encoder, "removed": len(removed),
        "tpr_before": metrics.get("idia_tpr_removed_before"), "tpr_after": metrics.get("idia_tpr_removed_after"),
        "others_before": metrics.get("idia_others_detected_before"),
        "others_after": metrics.get("idia_others_detected_after"),
        "non_members_after": metrics.get("idia_fpr_non_members_after"),
        "zero_shot_before": metrics.get("zero_shot_accuracy_before"),
        "zero_shot_after": metrics.get("zero_shot_accuracy_after"),
        "sim_backdoor_after": metrics.get("sim_backdoor_after"), "sim_clean": metrics.get("sim_clean"),
        "sim_target_before": metrics.get("sim_target_before"), "sim_target_after": metrics.get("sim_target_after"),
        "train_s": round(seconds, 1),
    }


def _cell(value) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="full", choices=sorted(WORLD_SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--removed", type=int, nargs="+", default=[10])
    parser.add_argument("--encoders", nargs="+", default=["text"], choices=("text", "vision", "both"))
    parser.add_argument("--max_steps", type=int, default=400)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--samples_per_step", type=int, default=128, help="poisoned and clean captions per step")
    parser.add_argument("--output_dir", default="outputs/bench-demo-unlearning")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--keep_candidates", action="store_true",
                        help="pass everyone else in the attack's pool as kept_names (text tower), as the example does")
    options = parser.parse_args()

    model, processor, world = load_demo_clip(options.size, options.seed)
    before = identity_inference_attack(model, processor, world.faces()["eval"], world.candidate_names)
    text_settings = {"max_steps": options.max_steps, "learning_rate": options.learning_rate,
                     "poisoned_samples_per_step": options.samples_per_step,
                     "clean_samples_per_step": options.samples_per_step}
    rows = []
    print(" | ".join(COLUMNS))
    print(" | ".join("---" for _ in COLUMNS))
    for encoder in options.encoders:
        for count in options.removed:
            row = run(world, model, processor, before, encoder, count, text_settings, options.output_dir,
                      options.keep_candidates)
            rows.append(row)
            print(" | ".join(_cell(row[column]) for column in COLUMNS), flush=True)
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump({"size": options.size, "text_settings": text_settings,
                       "vision_settings": DEMO_VISION_SETTINGS, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
