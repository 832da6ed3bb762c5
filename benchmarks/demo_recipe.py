"""Train (or load) the demo CLIP and measure what it knows: the figures the demo and its tests rely on.

    python benchmarks/demo_recipe.py --size ci                    # ~1.5 min of training on 2 CPU cores
    python benchmarks/demo_recipe.py --size full --retrain        # ~5 min; replaces the cached model
    python benchmarks/demo_recipe.py --size full --json out.json

Reports training time (wall and CPU: on a shared machine CPU time / threads is the better guide), the identity
inference attack on fresh pictures (members should be detected, non-members should not), and zero-shot
accuracy on the held-out shapes and digits against chance.
"""

from __future__ import annotations

import argparse
import json
import time

from clip_backdoor_unlearn.demo import WORLD_SIZES, DemoWorld, demo_training_stats, load_demo_clip
from clip_backdoor_unlearn.evaluation import identity_inference_attack, zero_shot_accuracy


def measure(size: str, seed: int, cache_dir: str | None, retrain: bool) -> dict:
    start = time.perf_counter()
    model, processor, world = load_demo_clip(size, seed, cache_dir=cache_dir, force_retrain=retrain)
    load_s = time.perf_counter() - start
    stats = demo_training_stats(size, seed, cache_dir)

    start = time.perf_counter()
    faces = world.faces()["eval"]
    result = identity_inference_attack(model, processor, faces, world.candidate_names)
    members, non_members = world.member_names, world.non_member_names
    zero_shot = world.zero_shot()
    accuracy = zero_shot_accuracy(model, processor, zero_shot, templates=world.zero_shot_templates)
    figures = {
        "size": size,
        "seed": seed,
        "load_or_train_s": round(load_s, 1),
        "training_s": stats.get("training_seconds"),
        "training_cpu_s": stats.get("training_cpu_seconds"),
        "threads": stats.get("threads"),
        "members": len(members),
        "non_members": len(non_members),
        "candidates": len(world.candidate_names),
        "eval_images_per_person": world.config.eval_images_per_person,
        "idia_member_tpr": result.tpr(members),
        "idia_non_member_fpr": result.tpr(non_members),
        "idia_member_mean_correct_prompts": sum(result.correct_prompts[n] for n in members) / len(members),
        "zero_shot_accuracy": accuracy,
        "zero_shot_chance": 1 / len(world.zero_shot_class_names),
        "evaluation_s": round(time.perf_counter() - start, 1),
    }
    return figures


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(WORLD_SIZES), default="ci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache-dir", default=None, help="cache root (default: $CLIP_BACKDOOR_UNLEARN_CACHE)"
    )
    parser.add_argument("--retrain", action="store_true", help="train even if a cached model exists")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    DemoWorld.build(args.size, args.seed)  # fail fast on a bad size before any training
    figures = measure(args.size, args.seed, args.cache_dir, args.retrain)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(
            f"{key.ljust(width)}  {value:.3f}" if isinstance(value, float) else f"{key.ljust(width)}  {value}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(figures, file, indent=2)
    return figures


if __name__ == "__main__":
    main()
