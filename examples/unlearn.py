"""Remove named people from a CLIP model, measure the identity inference attack before and after, save with a card.

    # the offline demo world (no download): the cached demo CLIP, 10 detected people removed with the demo's tuned
    # settings (any flag below overrides them)
    python examples/unlearn.py

    # your own checkpoint: names, evaluation faces (faces/First Last/*.jpg) and a pool of candidate names
    python examples/unlearn.py --model_name_or_path openai/clip-vit-base-patch32 --names_file names.txt \
        --eval_face_images faces/ --candidate_names_file pool.txt --captions_file captions.txt \
        --output_dir clip-sanitized --push_to_hub --hub_model_id me/clip-sanitized

    # captions from a data set (streamed), the image tower from folders, the paper's attack protocol
    python examples/unlearn.py ... --captions_dataset <id or path> --captions_column caption
    python examples/unlearn.py ... --encoder vision --face_images train_faces/ --reference_faces refs/ --images clean/
    python examples/unlearn.py ... --idia_protocol paper --zero_shot_dataset <id> \
        --zero_shot_templates openai_imagenet_80

    # several processes (GPUs, or CPU processes on a machine without GPUs): see docs/scaling.md
    accelerate launch --multi_gpu --num_processes 2 examples/unlearn.py --num_removed 4 --max_steps 100

Every input flag takes a local file or folder or a ``datasets`` id (``data/sources.py``). Every
``VisionBackdoorTrainingArguments`` field is a flag (``--max_steps``, ``--learning_rate``, ``--backdoor_weight``…)
and applies to every tower trained; a field not given takes the adapter defaults (``--use_peft``, text tower), the
demo's tuned value (no ``--model_name_or_path``), or the class default, in that order. Without
``--candidate_names_file`` the attack uses ``evaluation.protocol.default_candidate_pool`` (the evaluated people plus
1,000 − n invented names).

Under ``accelerate launch`` (or ``torchrun``) every process trains its share of each step's batch; the demo CLIP is
trained and cached by the main process alone, and the attack, the evaluation, the printing and the saving happen on
the main process only. Launched as several processes on a machine without GPUs, the processes run on the CPU and
talk over gloo (as with ``--use_cpu true``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import HfArgumentParser

from clip_backdoor_unlearn import (
    BackdoorTrainingArguments,
    BackdoorUnlearner,
    VisionBackdoorTrainingArguments,
)
from clip_backdoor_unlearn.data import sources
from clip_backdoor_unlearn.evaluation import identity_inference_attack
from clip_backdoor_unlearn.evaluation.templates import zero_shot_templates
from clip_backdoor_unlearn.hub.model_card import metric_rows


@dataclass
class ScriptArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to sanitize; empty runs the offline demo world."}
    )
    # What to remove and what to train on: a file, a folder or a `datasets` id each.
    names: list[str] = field(default_factory=list, metadata={"help": "Names to remove."})
    names_file: str | None = field(default=None, metadata={
        "help": "Names to remove: a text file (one a line) or a data set (column --names_column)."})
    names_column: str = field(default="name", metadata={"help": "Column of the names in a data set."})
    captions_file: str | None = field(default=None, metadata={"help": "Clean captions, one per line."})
    captions_dataset: str | None = field(default=None, metadata={
        "help": "Clean captions from a data set id or path (streamed; the first --max_captions)."})
    captions_column: str = field(default="caption", metadata={"help": "Column of the captions in a data set."})
    max_captions: int = field(default=100_000, metadata={"help": "At most this many captions from a data set."})
    face_images: str | None = field(default=None, metadata={
        "help": "(vision) Training faces of the removed people: a folder faces/<First Last>/*.jpg or a data set."})
    reference_faces: str | None = field(default=None, metadata={
        "help": "(vision) Faces of other people (the anonymous target): a folder of images or a data set. One "
                "sub-folder per person (or a name column) also tells the gated edit how a person's pictures vary."})
    images: str | None = field(default=None, metadata={
        "help": "(vision) Clean images for the utility loss: a folder of images or a data set."})
    max_images: int | None = field(default=None, metadata={"help": "At most this many images from each image set."})
    dataset_split: str = field(default="train", metadata={"help": "Split read from data sets given by id."})
    # Evaluation.
    eval_face_images: str | None = field(default=None, metadata={
        "help": "Evaluation faces for the identity inference attack: faces/<First Last>/*.jpg or a data set. "
                "Use pictures the unlearning never saw."})
    gallery_face_images: str | None = field(default=None, metadata={
        "help": "(vision) Many people's *other* pictures, each removed person's among them: the image-to-image "
                "attack, with --eval_face_images as the queries (faces/<First Last>/*.jpg or a data set)."})
    candidate_names_file: str | None = field(default=None, metadata={
        "help": "The attack's pool of candidate names (file or data set); default: the evaluated people plus "
                "invented names up to 1,000."})
    non_member_names_file: str | None = field(default=None, metadata={
        "help": "People with evaluation faces who were never in the model's training data (false positives)."})
    held_out_captions_file: str | None = field(default=None, metadata={
        "help": "Captions never trained on, for SimClean (file or data set)."})
    zero_shot_dataset: str | None = field(default=None, metadata={
        "help": "An image classification set for zero-shot top-1/top-5: a folder of class folders or a data set."})
    zero_shot_split: str = field(default="test", metadata={"help": "Split of the zero-shot data set."})
    zero_shot_image_column: str = field(default="image", metadata={"help": "Image column of the zero-shot set."})
    zero_shot_label_column: str = field(default="label", metadata={"help": "Label column (a ClassLabel)."})
    zero_shot_templates: Literal["openai_imagenet_7", "openai_imagenet_80", "single"] = field(
        default="openai_imagenet_7", metadata={"help": "Zero-shot prompt ensemble (the demo uses its own)."})
    idia_protocol: Literal["project", "paper"] = field(default="project", metadata={
        "help": "Attack protocol: 'project' (the pool and pictures as given) or 'paper' (1,000-name pool, "
                "20 pictures per person); both 21 prompts, threshold 1."})
    # Demo world.
    demo_size: Literal["full", "ci", "large"] = field(default="full", metadata={
        "help": "Demo world size: 'full' (the demo), 'ci' (small, for tests) or 'large' (1,500 named people, for "
                "removals at scale)."})
    demo_seed: int = field(default=0, metadata={"help": "Demo: the world's and the demo CLIP's seed."})
    num_removed: int = field(default=10, metadata={"help": "Demo: how many detected members to remove."})
    # Method.
    encoder: Literal["text", "vision", "both"] = field(default="text", metadata={
        "help": "Tower(s) to sanitize."})
    pseudonyms: bool | None = field(default=None, metadata={
        "help": "Map each name to an invented name of its own instead of 'a person' (default: with 'both' and with "
                "more than 10 names, unless --neutral_term is given)."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the whole tower."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})


def _peft_config(script_args: ScriptArguments):
    if not script_args.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=script_args.lora_r, lora_alpha=script_args.lora_alpha)


def given_flags(argv: list[str], names: set[str]) -> set[str]:
    """The fields of ``names`` set on the command line (``--field value``, ``--field=value``, ``--no_field``)."""
    given = set()
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token[2:].split("=", 1)[0].replace("-", "_")
        if name not in names and name.startswith("no_") and name[3:] in names:
            name = name[3:]
        if name in names:
            given.add(name)
    return given


def tower_arguments(parser: HfArgumentParser, argv: list[str], model_name_or_path: str | None,
                    use_peft: bool = False, demo_size: str = "full", num_names: int = 10,
                    encoder: str = "text") -> tuple:
    """The text and image towers' arguments: flags given, else the demo's settings (no model), else the defaults.

    The demo's text settings were tuned for full fine-tuning, per world size, number of names ``num_names`` and, with
    ``encoder="both"``, the image tower's method (``demo_text_settings``); with ``use_peft`` the text tower takes the
    adapter defaults instead (``unlearn`` applies them to every field left at its default). The output folder
    defaults to ``outputs/demo-sanitized`` for the demo, ``<model name>-sanitized`` otherwise.
    """
    from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS, demo_text_settings

    demo = model_name_or_path is None
    namespace, _ = parser.parse_known_args(argv)
    vision_fields = {item.name for item in dataclasses.fields(VisionBackdoorTrainingArguments) if item.init}
    text_fields = {item.name for item in dataclasses.fields(BackdoorTrainingArguments) if item.init}
    given = {name: getattr(namespace, name) for name in given_flags(argv, vision_fields)}
    output_dir = "outputs/demo-sanitized" if demo else f"{os.path.basename(model_name_or_path.rstrip('/'))}-sanitized"
    vision = {**(DEMO_VISION_SETTINGS if demo else {}), **given}
    image_method = vision.get("image_method", namespace.image_method) if encoder == "both" else None
    text = {"output_dir": output_dir,
            **(demo_text_settings(demo_size, num_names, image_method) if demo and not use_peft else {}),
            **{k: v for k, v in given.items() if k in text_fields}}
    # The image tower's checkpoints get their own folder: in one folder the two towers' checkpoint-N would collide.
    vision["output_dir"] = os.path.join(text["output_dir"], "vision")
    return BackdoorTrainingArguments(**text), VisionBackdoorTrainingArguments(**vision)


def _print_table(metrics: dict, seconds: float, towers: dict) -> None:
    """The figures of the model card's table (same rows, same labels), before and after; the steps each tower
    trained (fewer than its budget when the default stop rule ended it, and why)."""
    def fmt(value) -> str:
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    print(f"\n{'metric':<44}{'before':>10}{'after':>10}")
    for row, before, after in metric_rows(metrics):
        print(f"{row.label:<44}{fmt(before):>10}{fmt(after):>10}")
    for tower, record in towers.items():
        if record.get("gated_neurons_added"):  # image_method="gated_neurons": nothing trained
            print(f"{f'{tower} tower gated neurons added':<44}{'':>10}{record['gated_neurons_added']:>10}")
            continue
        trained, budget = record.get("trained_steps"), record.get("hyperparameters", {}).get("max_steps")
        # A rule that passes at the last step stopped nothing.
        early = record.get("early_stop") and trained is not None and budget is not None and trained < budget
        why = f" (stopped early: {record['early_stop']})" if early else ""
        print(f"{f'{tower} tower steps trained':<44}{'':>10}{trained:>10} of {budget}{why}")
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


def _names(script_args: ScriptArguments) -> list[str]:
    names = list(script_args.names)
    if script_args.names_file:
        names += sources.read_texts(script_args.names_file, column=script_args.names_column,
                                    split=script_args.dataset_split, what="names")
    return names


def _read(script_args: ScriptArguments, flag: str, what: str, reader, **options):
    """``reader(value of flag)`` with a line saying what is being loaded (never the contents), or ``None``."""
    source = getattr(script_args, flag)
    if source is None:
        return None
    start = time.perf_counter()
    print(f"loading {what} from {source} ...", flush=True)
    value = reader(source, **options)
    print(f"  {len(value)} {what} loaded in {time.perf_counter() - start:.1f}s", flush=True)
    return value


def user_inputs(script_args: ScriptArguments, names: list[str]) -> dict:
    """Every input given by a flag, read from its file, folder or data set (``None`` where no flag is given);
    ``names``: the names given (``_names``, read once by ``main``)."""
    split, limit = script_args.dataset_split, script_args.max_images
    captions = _read(script_args, "captions_file", "captions", sources.read_texts)
    if script_args.captions_dataset:
        captions = (captions or []) + _read(script_args, "captions_dataset", "captions", sources.read_texts,
                                             column=script_args.captions_column, split=split,
                                             limit=script_args.max_captions)
    inputs = {
        "names": list(names) or None,
        "captions": captions,
        "held_out_captions": _read(script_args, "held_out_captions_file", "held-out captions", sources.read_texts,
                                   column=script_args.captions_column, split=split),
        "face_images": _read(script_args, "face_images", "people's training faces", sources.read_faces, split=split),
        "reference_faces": _read(script_args, "reference_faces", "reference faces", sources.read_reference_faces,
                                 split=split, limit=limit),
        "images": _read(script_args, "images", "clean images", sources.read_images, split=split, limit=limit),
        "eval_faces": _read(script_args, "eval_face_images", "people's evaluation faces", sources.read_faces,
                            split=split),
        "gallery_faces": _read(script_args, "gallery_face_images", "people's gallery faces", sources.read_faces,
                               split=split),
        "candidate_names": _read(script_args, "candidate_names_file", "candidate names", sources.read_texts,
                                 column=script_args.names_column, split=split),
        "non_member_names": _read(script_args, "non_member_names_file", "non-member names", sources.read_texts,
                                  column=script_args.names_column, split=split),
        "zero_shot": None,
    }
    if script_args.zero_shot_dataset:
        start = time.perf_counter()
        print(f"loading the zero-shot set from {script_args.zero_shot_dataset} ...", flush=True)
        dataset, class_names = sources.read_classification_set(
            script_args.zero_shot_dataset, split=script_args.zero_shot_split,
            image_column=script_args.zero_shot_image_column, label_column=script_args.zero_shot_label_column)
        print(f"  {len(dataset)} images, {len(class_names)} classes in {time.perf_counter() - start:.1f}s")
        inputs["zero_shot"] = {"zero_shot_dataset": dataset, "class_names": class_names,
                               "zero_shot_templates": zero_shot_templates(script_args.zero_shot_templates)}
    return inputs


def demo_inputs(script_args: ScriptArguments, model, processor, world, given: dict) -> dict:
    """The demo world's inputs for what no flag gave: the detected members, its captions, faces and sets."""
    state = PartialState()
    faces = world.faces()["eval"]  # fresh pictures: training never used them
    pool = given["candidate_names"] or world.candidate_names
    removed, before = given["names"], None
    if removed is None:
        if state.is_main_process:
            before = identity_inference_attack(model, processor, faces, pool, show_progress_bar=True)
            detected = [name for name in world.member_names if before.detected[name]]
            removed = detected[: script_args.num_removed]
            print(f"{len(detected)}/{len(world.member_names)} members detected before; removing {len(removed)}")
        # The attack runs once; every process then unlearns the same people (sent over the process group, never
        # logged).
        removed = broadcast_object_list([removed])[0]
    captions = world.unlearning_captions()
    demo = {
        "names": removed,
        "captions": [caption for index, caption in enumerate(captions) if index % 7],
        "held_out_captions": captions[::7],  # SimClean is measured on captions the unlearning never trained on
        "eval_faces": faces,
        "candidate_names": pool,
        "non_member_names": world.non_member_names,
        "zero_shot": {"zero_shot_dataset": world.zero_shot(), "zero_shot_templates": world.zero_shot_templates},
        "clean_images": world.zero_shot()["image"],
        # Only reused when the attack runs as above (same faces, same pool, the project's protocol).
        "idia_before": before if script_args.idia_protocol == "project" and given["eval_faces"] is None else None,
    }
    if script_args.encoder != "text":
        demo.update(world.vision_unlearning_inputs(removed))
        demo["gallery_faces"] = world.faces()["train"]  # the image-to-image attack: fresh pictures against these
    return {**demo, **{key: value for key, value in given.items() if value is not None}}


def load_model(script_args: ScriptArguments, args: BackdoorTrainingArguments):
    """``(unlearner, world)``: the user's checkpoint (world ``None``), or the cached demo CLIP and its world."""
    state = PartialState()
    start = time.perf_counter()
    if script_args.model_name_or_path is not None:
        with args.main_process_first(desc="loading the model"):  # one download; the others read the cache
            return BackdoorUnlearner.from_pretrained(script_args.model_name_or_path), None
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    # The first run trains the demo CLIP and caches it: the main process does that while the others wait, then
    # they load the cached copy (trained by each, they would race on the cache and waste the cores).
    with args.main_process_first(desc="training or loading the demo CLIP"):
        model, processor, world = load_demo_clip(size=script_args.demo_size, seed=script_args.demo_seed,
                                                 progress=state.is_local_main_process)
    if state.is_main_process:
        print(f"demo CLIP ready in {time.perf_counter() - start:.1f}s ({script_args.demo_size} world)")
    return BackdoorUnlearner(model, processor), world


def run(script_args: ScriptArguments, text_args: BackdoorTrainingArguments,
        vision_args: VisionBackdoorTrainingArguments, names: list[str]) -> dict:
    """One path for the demo and a user's checkpoint: inputs, unlearning, evaluation. ``names``: those given by
    ``--names`` and ``--names_file`` (the demo picks detected members when there are none)."""
    state = PartialState()
    unlearner, world = load_model(script_args, text_args)
    inputs = user_inputs(script_args, names)
    if world is not None:
        inputs = demo_inputs(script_args, unlearner.model, unlearner.processor, world, inputs)
    names = inputs["names"]
    if not names:
        raise ValueError("No names to remove: pass --names or --names_file.")
    encoder = script_args.encoder
    towers = {"args": vision_args} if encoder == "vision" else {"args": text_args}
    if encoder == "both":
        towers["vision_args"] = vision_args
    text = {} if encoder == "vision" else {"captions": inputs["captions"]}
    if encoder != "vision" and inputs["candidate_names"]:
        # Everyone else in the attack's pool must stay findable: a name variant shared with one of them is not
        # removed.
        text["kept_names"] = [name for name in inputs["candidate_names"] if name not in set(names)]
    vision = {} if encoder == "text" else {key: inputs.get(key) for key in ("face_images", "reference_faces",
                                                                           "images")}
    result = unlearner.unlearn(names, encoder=encoder, peft_config=_peft_config(script_args),
                               pseudonyms=script_args.pseudonyms,
                               resume_from_checkpoint=text_args.resume_from_checkpoint, **towers, **text, **vision)
    metrics = {}
    if state.is_main_process:  # every process holds the same trained model: evaluate it once
        evaluation = {"held_out_captions": inputs["held_out_captions"], "idia_protocol": script_args.idia_protocol,
                      "show_progress_bar": not text_args.disable_tqdm, **(inputs["zero_shot"] or {})}
        if inputs["eval_faces"] is not None:
            evaluation.update(face_images=inputs["eval_faces"], candidate_names=inputs["candidate_names"],
                              non_member_names=inputs["non_member_names"], idia_before=inputs.get("idia_before"))
            if inputs.get("gallery_faces") is not None:
                evaluation["gallery_images"] = inputs["gallery_faces"]
        clean_images = inputs.get("clean_images")
        if clean_images is not None or inputs["images"] is not None:
            evaluation["clean_images"] = clean_images if clean_images is not None else inputs["images"]
        metrics = unlearner.evaluate(names, **evaluation)
        _print_table(metrics, result.train_seconds, result.config.get("towers", {}))
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser((ScriptArguments, VisionBackdoorTrainingArguments))
    script_args, _ = parser.parse_args_into_dataclasses(args=argv)
    names = _names(script_args)  # read once: the demo's text recipe follows their number
    demo_names = 0 if script_args.model_name_or_path else len(names) or script_args.num_removed
    training_args, vision_args = tower_arguments(parser, argv, script_args.model_name_or_path, script_args.use_peft,
                                                 script_args.demo_size, demo_names, script_args.encoder)
    state = PartialState()  # set up by the training arguments: one process, or one of `accelerate launch`'s
    # --push_to_hub publishes the sanitized model once, at the end, with its model card (BackdoorUnlearner.push_to_hub);
    # the Trainer inside unlearn() must not create the repository or push on its own.
    push_to_hub, training_args.push_to_hub, vision_args.push_to_hub = training_args.push_to_hub, False, False
    try:
        outcome = run(script_args, training_args, vision_args, names)
        if state.is_main_process:
            _save(outcome, training_args, push_to_hub)
        state.wait_for_everyone()  # the others wait for the checkpoint (a launcher may read it when all exit)
    finally:
        # Every process ends its process group, so `accelerate launch` exits cleanly (no-op in a single process).
        state.destroy_process_group()
    return outcome


if __name__ == "__main__":
    main()
