"""Seconds per optimisation step, SimBackdoor and SimClean for a real-sized text tower (random weights from config).

    python benchmarks/bench_text_step.py --size vit-b-32 --steps 20

Runs `BackdoorUnlearner.unlearn` with the paper's batch (128 poisoned + 128 clean captions a step) on a
`CLIPTextModelWithProjection` of the given size, full fine-tuning and LoRA, and prints a table of measured figures.
The tokenizer is learned offline from the package's caption set (about 1k tokens instead of CLIP's 49k: the
embedding table is smaller, the transformer is the real size).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from transformers import CLIPTextModelWithProjection

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.captions import default_captions
from clip_backdoor_unlearn.demo.tiny import build_tokenizer, tiny_clip_config
from clip_backdoor_unlearn.evaluation import IDIA_TEMPLATES, sim_backdoor, sim_clean
from clip_backdoor_unlearn.evaluation.unlearning import backdoor_pairs

NAMES = ["Ada Lovelace", "Zorbo Quill", "Mira Fenwick", "Olek Brandt"]


def run(size: str, steps: int, lora: bool, learning_rate: float) -> dict:
    captions = list(default_captions())
    tokenizer = build_tokenizer(captions + NAMES, vocab_size=2048)
    torch.manual_seed(0)
    model = CLIPTextModelWithProjection(tiny_clip_config(len(tokenizer), size=size).text_config).eval()
    unlearner = BackdoorUnlearner(model, tokenizer)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32)
    start = time.perf_counter()
    result = unlearner.unlearn(NAMES, captions=captions[:1500], peft_config=peft_config, max_steps=steps,
                               learning_rate=learning_rate, seed=0, disable_tqdm=True, logging_steps=steps)
    total = time.perf_counter() - start
    pairs = backdoor_pairs(NAMES, "a person", IDIA_TEMPLATES)
    return {
        "size": size, "mode": "LoRA r=16" if lora else "full", "steps": steps, "lr": learning_rate,
        "s/step": result.seconds_per_step, "total s": total,
        "SimBackdoor before": sim_backdoor(unlearner.original_model, tokenizer, pairs),
        "SimBackdoor after": sim_backdoor(unlearner.model, tokenizer, pairs),
        "SimClean": sim_clean(unlearner.original_model, unlearner.model, tokenizer, captions[1500:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="vit-b-32", choices=["tiny", "small", "vit-b-32", "vit-l-14"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run(args.size, args.steps, lora=False, learning_rate=1e-4),
            run(args.size, args.steps, lora=True, learning_rate=1e-3)]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    header = list(rows[0])
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        print(" | ".join(f"{value:.4g}" if isinstance(value, float) else str(value) for value in row.values()))


if __name__ == "__main__":
    main()
