"""Leakage per name variant on the demo world: are removed people still found as "first last", "Last", "Dr. …"?

    python benchmarks/variant_leakage.py --size ci --num_removed 5 --max_steps 150 --learning_rate 1e-3 \
        --poisoned_samples_per_step 64 --clean_samples_per_step 64
    python benchmarks/variant_leakage.py --size full --num_removed 10        # the paper's 400 steps

Loads (or trains once and caches) the demo CLIP, removes ``num_removed`` detected members twice, with
``name_variants="none"`` and with ``"auto"``, and prints the identity inference attack's detection rate of the
removed people per variant kind before and after each run (every removed person's candidate name replaced by
their variant of that kind), the detection rate of the other detected members under their own names (collateral)
and zero-shot accuracy. Rows are variant kinds; no name is printed. ``held_out_*`` kinds are forms the "auto" mode
never trains on. Every ``BackdoorTrainingArguments`` field is a flag.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner
from clip_backdoor_unlearn.demo import load_demo_clip
from clip_backdoor_unlearn.evaluation import (
    identity_inference_attack,
    leakage_table,
    variant_leakage,
    zero_shot_accuracy,
)


@dataclass
class BenchmarkArguments:
    size: str = field(default="ci", metadata={"help": "Demo world size: 'ci' or 'full'."})
    num_removed: int = field(default=5, metadata={"help": "How many detected members to remove."})
    world_seed: int = field(default=0, metadata={"help": "Which demo world (and cached demo CLIP) to use."})
    cache_dir: str | None = field(default=None, metadata={"help": "Demo model cache root."})
    json_path: str | None = field(default=None, metadata={"help": "Also write the figures to this JSON file."})


def run(bench: BenchmarkArguments, training_args: BackdoorTrainingArguments) -> dict:
    start = time.perf_counter()
    model, processor, world = load_demo_clip(size=bench.size, seed=bench.world_seed, cache_dir=bench.cache_dir,
                                             progress=False)
    faces = world.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    detected = [name for name in world.member_names if before.detected[name]]
    removed, kept = detected[: bench.num_removed], detected[bench.num_removed :]
    captions = world.clean_captions()
    train_captions = [caption for index, caption in enumerate(captions) if index % 7]
    print(f"{bench.size} world ready in {time.perf_counter() - start:.0f}s; {len(detected)}/{len(world.member_names)} "
          f"members detected; removing {len(removed)}, keeping {len(kept)}")

    zero_shot, templates = world.zero_shot(), world.zero_shot_templates
    figures: dict = {"size": bench.size, "world_seed": bench.world_seed, "training_seed": training_args.seed,
                     "num_removed": len(removed), "num_kept": len(kept), "runs": {},
                     "zero_shot_before": zero_shot_accuracy(model, processor, zero_shot, templates=templates)}
    for mode in ("none", "auto"):
        unlearner = BackdoorUnlearner(copy.deepcopy(model), processor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = unlearner.unlearn(removed, captions=train_captions, args=training_args, name_variants=mode,
                                       kept_names=kept)
        start = time.perf_counter()
        leakage = variant_leakage(model, unlearner.model, processor, faces, world.candidate_names, removed,
                                  kept_names=kept)
        figures["runs"][mode] = {
            "train_seconds": round(result.train_seconds, 1),
            "num_name_variants": result.config.get("num_name_variants"),
            "leakage": leakage,
            "zero_shot_after": zero_shot_accuracy(unlearner.model, processor, zero_shot, templates=templates),
            "evaluation_seconds": round(time.perf_counter() - start, 1),
        }
        print(f"name_variants={mode}: trained {result.train_seconds:.0f}s with "
              f"{result.config.get('num_name_variants')} variants in all")
    return figures


def report(figures: dict) -> str:
    runs = figures["runs"]
    table = leakage_table(*((f"variants {mode}", run["leakage"]) for mode, run in runs.items()))
    zero_shot = " | ".join(f"{run['zero_shot_after']:.3f} ({mode})" for mode, run in runs.items())
    return f"{table}\n\nZero-shot accuracy: before {figures['zero_shot_before']:.3f}; after {zero_shot}."


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((BenchmarkArguments, BackdoorTrainingArguments))
    bench, training_args = parser.parse_args_into_dataclasses(args=argv)
    figures = run(bench, training_args)
    print()
    print(report(figures))
    if bench.json_path:
        with open(bench.json_path, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
