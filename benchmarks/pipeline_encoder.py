"""Sanitize a pipeline-style text encoder (plain CLIPTextModel) and measure its conditioning (issue 15).

The text tower of the cached CI demo CLIP (seed 0) is taken as a plain ``CLIPTextModel``, as Stable Diffusion
1.x/2.x pipelines hold it, and the first ``N`` members of the demo world are removed with the default
``text_target="sequence"`` (the 77-token sequence the pipeline feeds its UNet). ``evaluation.conditioning`` then
measures, on pipeline wordings never trained: the share of (removed name, prompt) pairs whose sanitized
conditioning is nearer the original conditioning of the neutral prompt than that of the name prompt, and the mean
position-wise cosine of the other members' prompts and of clean prompts to their originals. ``--anchors`` adds the
kept members' names (in the training templates) to the clean captions, so the utility loss holds them in place.

    python benchmarks/pipeline_encoder.py --names 5,16 --max_steps 150            # figures in RESULTS.md
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
from clip_backdoor_unlearn.demo.recipe import load_demo_clip
from clip_backdoor_unlearn.evaluation.conditioning import PIPELINE_TEMPLATES
from clip_backdoor_unlearn.training.towers import TEXT, plain_tower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default="5,16", help="comma-separated numbers of members to remove")
    parser.add_argument("--max_steps", type=int, default=150)
    parser.add_argument("--samples_per_step", type=int, default=32, help="poisoned and clean captions a step")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--text_target", default="sequence")
    parser.add_argument("--anchors", action="store_true", help="kept members' names in the clean captions")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, processor, world = load_demo_clip(size="ci", seed=0, progress=False)
    encoder, tokenizer = plain_tower(model, TEXT), processor.tokenizer
    evaluated = {template.format("a person") for template in PIPELINE_TEMPLATES}
    captions = [caption for caption in world.unlearning_captions() if caption not in evaluated]
    for count in map(int, args.names.split(",")):
        removed, kept = world.member_names[:count], world.member_names[count:]
        run_captions = captions + ([template.format(name) for name in kept for template in PERSON_TEMPLATES]
                                   if args.anchors else [])
        unlearner = BackdoorUnlearner(copy.deepcopy(encoder), tokenizer)  # trained in place: a fresh copy per run
        start = time.perf_counter()
        unlearner.unlearn(removed, captions=run_captions, max_steps=args.max_steps, name_variants=None,
                          poisoned_samples_per_step=args.samples_per_step,
                          clean_samples_per_step=args.samples_per_step, learning_rate=args.learning_rate,
                          text_target=args.text_target, disable_tqdm=True, logging_steps=args.max_steps)
        seconds = time.perf_counter() - start
        metrics = unlearner.evaluate(removed, kept_names=kept)
        print(json.dumps({"names": count, "kept": len(kept), "anchors": args.anchors, "steps": args.max_steps,
                          "text_target": args.text_target, "seconds": round(seconds, 1),
                          **{key: round(value, 4) if isinstance(value, float) else value
                             for key, value in metrics.items()}}), flush=True)


if __name__ == "__main__":
    main()
