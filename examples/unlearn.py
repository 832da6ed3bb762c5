"""Remove named people from a CLIP model and print the identity inference attack before and after.

    # the offline demo world (no download): builds or loads the cached demo CLIP, removes 10 detected people
    python examples/unlearn.py

    # your own checkpoint and names
    python examples/unlearn.py --model_name_or_path openai/clip-vit-base-patch32 --names_file names.txt \
        --output_dir clip-sanitized

    # several processes (GPUs, or CPU processes on a machine without GPUs): see docs/scaling.md
    accelerate launch --multi_gpu --num_processes 2 examples/unlearn.py --num_removed 4 --max_steps 100

    # publish the sanitized model with its model card (names are never published)
    python examples/unlearn.py --model_name_or_path ... --names_file names.txt --output_dir clip-sanitized \
        --push_to_hub --hub_model_id your-name/clip-sanitized

Every ``BackdoorTrainingArguments`` field is a flag (``--max_steps``, ``--learning_rate``, ``--backdoor_weight``…).

Under ``accelerate launch`` (or ``torchrun``) every process trains its share of each step's batch; the demo CLIP is
trained and cached by the main process alone, and the attack, the evaluation, the printing and the saving happen on
the main process only. Launched as several processes on a machine without GPUs, the processes run on the CPU and
talk over gloo (as with ``--use_cpu true``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import HfArgumentParser

from clip_backdoor_unlearn import (
    BackdoorTrainingArguments,
    BackdoorUnlearner,
    VisionBackdoorTrainingArguments,
)
from clip_backdoor_unlearn.evaluation import identity_inference_attack
from clip_backdoor_unlearn.hub.model_card import metric_rows


@dataclass
class ScriptArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to sanitize; empty runs the offline demo world."}
    )
    names: list[str] = field(default_factory=list, metadata={"help": "Names to remove."})
    names_file: str | None = field(default=None, metadata={"help": "A file with one name to remove per line."})
    captions_file: str | None = field(default=None, metadata={"help": "Clean captions, one per line."})
    demo_size: str = field(default="full", metadata={"help": "Demo world size: 'full' or 'ci'."})
    demo_seed: int = field(default=0, metadata={"help": "Demo: the world's and the demo CLIP's seed."})
    num_removed: int = field(default=10, metadata={"help": "Demo: how many detected members to remove."})
    encoder: str = field(default="text", metadata={"help": "Tower(s) to sanitize: 'text', 'vision' or 'both'."})
    pseudonyms: bool | None = field(default=None, metadata={
        "help": "Map each name to an invented name of its own instead of 'a person' (default: only with 'both')."})
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
    """The figures of the model card's table (same rows, same labels), before and after."""
    def fmt(value) -> str:
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    print(f"\n{'metric':<44}{'before':>10}{'after':>10}")
    for row, before, after in metric_rows(metrics):
        print(f"{row.label:<44}{fmt(before):>10}{fmt(after):>10}")
    print(f"{'unlearning seconds':<44}{'':>10}{seconds:>10.1f}\n")


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def _cpu_processes_without_gpus() -> None:
    """``accelerate launch --multi_gpu`` or ``torchrun`` on a machine without GPUs: train on CPU processes (gloo).

    Without this, Accelerate starts the process group but leaves each process in a single-process state, so every
    process would train on the whole batch on its own. Set here, before the arguments are parsed, it holds for every
    ``TrainingArguments`` the run creates (the image tower's too).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _has_accelerator():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def run_demo(script_args: ScriptArguments, training_args: BackdoorTrainingArguments) -> dict:
    from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS, load_demo_clip

    state = PartialState()
    start = time.perf_counter()
    # The first run trains the demo CLIP and caches it: the main process does that while the others wait, then
    # they load the cached copy (trained by each, they would race on the cache and waste the cores).
    with training_args.main_process_first(desc="training or loading the demo CLIP"):
        model, processor, world = load_demo_clip(size=script_args.demo_size, seed=script_args.demo_seed,
                                                 progress=state.is_local_main_process)
    unlearner = BackdoorUnlearner(model, processor)
    faces = world.faces()["eval"]  # fresh pictures: training never used them
    before, removed = None, None
    if state.is_main_process:
        print(f"demo CLIP ready in {time.perf_counter() - start:.1f}s ({script_args.demo_size} world)")
        before = identity_inference_attack(model, processor, faces, world.candidate_names)
        detected = [name for name in world.member_names if before.detected[name]]
        removed = detected[: script_args.num_removed]
        print(f"{len(detected)}/{len(world.member_names)} members detected before; removing {len(removed)}")
    # The attack runs once; every process then unlearns the same people (sent over the process group, never logged).
    removed = broadcast_object_list([removed])[0]
    captions = world.unlearning_captions()
    held_out = captions[::7]  # SimClean is measured on captions the unlearning never trained on
    train_captions = [caption for index, caption in enumerate(captions) if index % 7]
    vision = {}
    if script_args.encoder != "text":
        # The training arguments on the command line are the text tower's; the image tower gets the settings
        # tuned for the demo world (the paper's, sized for a tiny CLIP on 2 cores).
        vision = world.vision_unlearning_inputs(removed)
        vision["vision_args"] = VisionBackdoorTrainingArguments(
            output_dir=os.path.join(training_args.output_dir, "vision"), seed=training_args.seed,
            disable_tqdm=training_args.disable_tqdm,
            logging_steps=training_args.logging_steps, report_to="none", use_cpu=training_args.use_cpu,
            **DEMO_VISION_SETTINGS,
        )
        if script_args.encoder == "vision":
            vision["args"] = vision.pop("vision_args")
    # Everyone else in the attack's pool must stay findable: a name variant shared with one of them is not removed.
    kept = [name for name in world.candidate_names if name not in set(removed)]
    text_args = {} if script_args.encoder == "vision" else {"captions": train_captions, "args": training_args,
                                                             "kept_names": kept}
    result = unlearner.unlearn(removed, encoder=script_args.encoder, peft_config=_peft_config(script_args),
                               pseudonyms=script_args.pseudonyms,
                               resume_from_checkpoint=training_args.resume_from_checkpoint, **text_args, **vision)
    metrics = {}
    if state.is_main_process:  # every process holds the same trained model: evaluate it once
        metrics = unlearner.evaluate(
            removed, face_images=faces, clean_images=world.zero_shot()["image"],
            candidate_names=world.candidate_names, non_member_names=world.non_member_names, idia_before=before,
            held_out_captions=held_out, zero_shot_dataset=world.zero_shot(),
            zero_shot_templates=world.zero_shot_templates,
        )
        _print_table(metrics, result.train_seconds)
    return {"unlearner": unlearner, "metrics": metrics, "result": result}


def run_checkpoint(script_args: ScriptArguments, training_args: BackdoorTrainingArguments) -> dict:
    state = PartialState()
    names = list(script_args.names) + (_read_lines(script_args.names_file) if script_args.names_file else [])
    captions = _read_lines(script_args.captions_file) if script_args.captions_file else None
    with training_args.main_process_first(desc="loading the model"):  # one download; the others read the cache
        unlearner = BackdoorUnlearner.from_pretrained(script_args.model_name_or_path)
    result = unlearner.unlearn(names, captions=captions, args=training_args, peft_config=_peft_config(script_args),
                               pseudonyms=script_args.pseudonyms)
    metrics = {}
    if state.is_main_process:
        metrics = unlearner.evaluate(names)
        _print_table(metrics, result.train_seconds)
    return {"unlearner": unlearner, "metrics": metrics, "result": result}


def _save(outcome: dict, training_args: BackdoorTrainingArguments, push_to_hub: bool) -> None:
    """Write (and optionally push) the sanitized checkpoint with its metrics: the main process only.

    The checkpoint goes to ``output_dir/sanitized`` (its own folder: the Trainer's checkpoint-* next to it stay),
    the metrics next to it.
    """
    unlearner = outcome["unlearner"]
    saved = unlearner.save_pretrained(os.path.join(training_args.output_dir, "sanitized"))
    with open(os.path.join(training_args.output_dir, "unlearning_metrics.json"), "w", encoding="utf-8") as handle:
        json.dump(outcome["metrics"], handle, indent=2, sort_keys=True)
    print(f"sanitized checkpoint written to {saved}")
    if push_to_hub:
        repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
        commit = unlearner.push_to_hub(repo_id, private=training_args.hub_private_repo is not False,
                                       token=training_args.hub_token)
        print(f"pushed to {commit.commit_url} (the card gives the number of removed people, not the names)")


def main(argv: list[str] | None = None) -> dict:
    _cpu_processes_without_gpus()
    parser = HfArgumentParser((ScriptArguments, BackdoorTrainingArguments))
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    state = PartialState()  # set up by the training arguments: one process, or one of `accelerate launch`'s
    # --push_to_hub publishes the sanitized model once, at the end, with its model card (BackdoorUnlearner.push_to_hub);
    # the Trainer inside unlearn() must not create the repository or push on its own.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    try:
        if script_args.model_name_or_path is None:
            outcome = run_demo(script_args, training_args)
        else:
            outcome = run_checkpoint(script_args, training_args)
        if state.is_main_process:
            _save(outcome, training_args, push_to_hub)
        state.wait_for_everyone()  # the others wait for the checkpoint (a launcher may read it when all exit)
    finally:
        # Every process ends its process group, so `accelerate launch` exits cleanly (no-op in a single process).
        state.destroy_process_group()
    return outcome


if __name__ == "__main__":
    main()
