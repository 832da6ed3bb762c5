"""LoRA on the demo world's text tower: which adapter defaults forget, and what they cost.

    python benchmarks/lora_defaults.py --size ci --demo_seed 0 --num_removed 10 --configs defaults pseudonyms paper_lr
    python benchmarks/lora_defaults.py --size ci --demo_seed 1 --training_seeds 42 43 --configs defaults

Each config is ``unlearn(peft_config=LoraConfig(r=8), **config)`` on a fresh copy of the cached demo CLIP; the attack
before runs once. Prints one row a run: TPR on the removed people, other members lost, zero-shot top-1 before and after.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import torch

CONFIGS = {
    "defaults": {},  # ADAPTER_DEFAULTS (names → "a person")
    "pseudonyms": {"pseudonyms": True},
    "paper_lr": {"learning_rate": 1e-4, "pseudonyms": False},  # LoRA at the full fine-tuning settings
    "lr3e-3": {"learning_rate": 3e-3},
    "lr3e-3_pseudonyms": {"learning_rate": 3e-3, "pseudonyms": True},
}


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="ci")
    parser.add_argument("--demo_seed", type=int, default=0)
    parser.add_argument("--num_removed", type=int, default=10)
    parser.add_argument("--training_seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--configs", nargs="+", default=["defaults"], choices=sorted(CONFIGS))
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="training-argument overrides for every config, e.g. max_steps=200 learning_rate=3e-3")
    parser.add_argument("--target_modules", default=None,
                        help="LoRA target regex (default: the library's, every linear layer of the text tower)")
    parser.add_argument("--threads", type=int, default=1)  # more threads than free cores slow a busy machine
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    overrides = {key: _value(value) for key, value in (item.split("=", 1) for item in options.set)}

    from peft import LoraConfig

    from clip_backdoor_unlearn import BackdoorUnlearner
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip
    from clip_backdoor_unlearn.evaluation import identity_inference_attack

    model, processor, world = load_demo_clip(size=options.size, seed=options.demo_seed, progress=False)
    faces = world.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    removed = [name for name in world.member_names if before.detected[name]][: options.num_removed]
    kept = [name for name in world.candidate_names if name not in set(removed)]
    captions = world.unlearning_captions()
    train = [caption for index, caption in enumerate(captions) if index % 7]
    print(f"load {os.getloadavg()[0]:.1f}; {options.size} world seed {options.demo_seed}: {len(removed)} removed")
    print("config | training seed | TPR before | TPR after | others lost | zero-shot before | after | seconds")
    for name in options.configs:
        for seed in options.training_seeds:
            unlearner = BackdoorUnlearner(copy.deepcopy(model), processor)
            config = {**CONFIGS[name], **overrides}
            pseudonyms = config.pop("pseudonyms", None)
            start = time.perf_counter()
            unlearner.unlearn(removed, captions=train, kept_names=kept, pseudonyms=pseudonyms, seed=seed,
                              peft_config=LoraConfig(r=options.lora_r, lora_alpha=2 * options.lora_r,
                                                     target_modules=options.target_modules),
                              disable_tqdm=True, **config)
            seconds = time.perf_counter() - start
            metrics = unlearner.evaluate(removed, face_images=faces, candidate_names=world.candidate_names,
                                         idia_before=before, zero_shot_dataset=world.zero_shot(),
                                         zero_shot_templates=world.zero_shot_templates)
            print(f"{name} | {seed} | {metrics['idia_tpr_removed_before']:.2f} | "
                  f"{metrics['idia_tpr_removed_after']:.2f} | {metrics['idia_collateral_lost']}/"
                  f"{metrics['idia_others_detected_before']} | {metrics['zero_shot_accuracy_before']:.3f} | "
                  f"{metrics['zero_shot_accuracy_after']:.3f} | {seconds:.0f} | load {os.getloadavg()[0]:.1f}",
                  flush=True)
            print(json.dumps({"config": name, "seed": seed, **unlearner.unlearning_config["towers"]["text"][
                "hyperparameters"]}, default=str)[:400], flush=True)


if __name__ == "__main__":
    main()
