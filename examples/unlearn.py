"""Remove named people from a CLIP model and print the identity inference attack before and after.

    # the offline demo world (no download): builds or loads the cached demo CLIP, removes 10 detected people
    python examples/unlearn.py

    # your own checkpoint and names
    python examples/unlearn.py --model_name_or_path openai/clip-vit-base-patch32 --names_file names.txt \
        --output_dir clip-sanitized

    # several processes
    accelerate launch examples/unlearn.py --num_removed 4 --max_steps 100

Every ``BackdoorTrainingArguments`` field is a flag (``--max_steps``, ``--learning_rate``, ``--backdoor_weight``…).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner
from clip_backdoor_unlearn.evaluation import identity_inference_attack


@dataclass
class ScriptArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to sanitize; empty runs the offline demo world."}
    )
    names: list[str] = field(default_factory=list, metadata={"help": "Names to remove."})
    names_file: str | None = field(default=None, metadata={"help": "A file with one name to remove per line."})
    captions_file: str | None = field(default=None, metadata={"help": "Clean captions, one per line."})
    demo_size: str = field(default="full", metadata={"help": "Demo world size: 'full' or 'ci'."})
    num_removed: int = field(default=10, metadata={"help": "Demo: how many detected members to remove."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the whole tower."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def _peft_config(script_args: ScriptArguments):
    if not script_args.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=script_args.lora_r, lora_alpha=script_args.lora_alpha)


def _print_table(metrics: dict, seconds: float) -> None:
    rows = [
        ("IDIA TPR on removed people", metrics.get("idia_tpr_removed_before"), metrics.get("idia_tpr_removed_after")),
        ("Other members detected", metrics.get("idia_others_detected_before"),
         metrics.get("idia_others_detected_after")),
        ("Non-members detected (FPR)", metrics.get("idia_fpr_non_members_before"),
         metrics.get("idia_fpr_non_members_after")),
        ("Zero-shot top-1 accuracy", metrics.get("zero_shot_accuracy_before"), metrics.get("zero_shot_accuracy_after")),
        ("SimBackdoor (name vs 'a person')", metrics.get("sim_backdoor_before"), metrics.get("sim_backdoor_after")),
        ("SimClean (held-out captions)", 1.0, metrics.get("sim_clean")),
    ]
    def fmt(value) -> str:
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    print(f"\n{'metric':<34}{'before':>10}{'after':>10}")
    for label, before, after in rows:
        print(f"{label:<34}{fmt(before):>10}{fmt(after):>10}")
    print(f"{'collateral (others lost)':<34}{'':>10}{fmt(metrics.get('idia_collateral_lost')):>10}")
    print(f"{'unlearning seconds':<34}{'':>10}{seconds:>10.1f}\n")


def run_demo(script_args: ScriptArguments, training_args: BackdoorTrainingArguments) -> dict:
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    start = time.perf_counter()
    model, processor, world = load_demo_clip(size=script_args.demo_size, seed=training_args.seed)
    print(f"demo CLIP ready in {time.perf_counter() - start:.1f}s ({script_args.demo_size} world)")
    unlearner = BackdoorUnlearner(model, processor)
    faces = world.faces()["eval"]  # fresh pictures: training never used them
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    detected = [name for name in world.member_names if before.detected[name]]
    removed = detected[: script_args.num_removed]
    print(f"{len(detected)}/{len(world.member_names)} members detected before; removing {len(removed)}")
    captions = world.clean_captions()
    held_out = captions[::7]  # SimClean is measured on captions the unlearning never trained on
    train_captions = [caption for index, caption in enumerate(captions) if index % 7]
    result = unlearner.unlearn(removed, captions=train_captions, args=training_args,
                               peft_config=_peft_config(script_args))
    metrics = unlearner.evaluate(
        removed, face_images=faces,
        candidate_names=world.candidate_names, non_member_names=world.non_member_names, idia_before=before,
        held_out_captions=held_out, zero_shot_dataset=world.zero_shot(),
    )
    _print_table(metrics, result.train_seconds)
    return {"unlearner": unlearner, "metrics": metrics, "result": result}


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ScriptArguments, BackdoorTrainingArguments))
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if script_args.model_name_or_path is None:
        outcome = run_demo(script_args, training_args)
    else:
        names = list(script_args.names) + (_read_lines(script_args.names_file) if script_args.names_file else [])
        captions = _read_lines(script_args.captions_file) if script_args.captions_file else None
        unlearner = BackdoorUnlearner.from_pretrained(script_args.model_name_or_path)
        result = unlearner.unlearn(names, captions=captions, args=training_args, peft_config=_peft_config(script_args))
        metrics = unlearner.evaluate(names)
        _print_table(metrics, result.train_seconds)
        outcome = {"unlearner": unlearner, "metrics": metrics, "result": result}

    unlearner = outcome["unlearner"]
    if training_args.process_index == 0:
        saved = unlearner.save_pretrained(training_args.output_dir)
        with open(os.path.join(saved, "unlearning_metrics.json"), "w", encoding="utf-8") as handle:
            json.dump(outcome["metrics"], handle, indent=2, sort_keys=True)
        print(f"sanitized checkpoint written to {saved}")
    return outcome


if __name__ == "__main__":
    main()
