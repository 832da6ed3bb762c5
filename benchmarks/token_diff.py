"""What the weights tell: do the token-embedding rows that moved most name the removed people's tokens?

    python benchmarks/token_diff.py --size full --world_seed 0 --removed 10 --threads 1

Whoever holds the source model can compare it with a sanitized one. For each text setting (the whole tower at lr
1e-3; the token embedding and the names' own rows, the main job's, at lr 1e-2; ``DEMO_TEXT_SETTINGS`` otherwise)
this removes the first ``--removed`` members of a cached demo world, ranks the token-embedding rows by the norm of
their change, and prints how many of the most moved rows (as many as the names have tokens) are the names' tokens.
Prints counts, never a name or a token.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch
from time_to_forget import machine_line

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.demo.recipe import DEMO_TEXT_SETTINGS, load_demo_clip
from clip_backdoor_unlearn.demo.world import WORLD_SIZES
from clip_backdoor_unlearn.training.towers import is_token_embedding, name_token_ids

SETTINGS = (("tower", 1e-3), ("token_embedding", 1e-2), ("name_tokens", 1e-2))


def token_embedding(model: torch.nn.Module) -> torch.Tensor:
    return next(parameter for name, parameter in model.named_parameters() if is_token_embedding(name)).detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="full", choices=sorted(WORLD_SIZES))
    parser.add_argument("--world_seed", type=int, default=0)
    parser.add_argument("--removed", type=int, default=10, help="the first N members are removed")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, help="torch threads")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    load_before = os.getloadavg()
    model, processor, world = load_demo_clip(options.size, options.world_seed)
    names = world.member_names[: options.removed]
    captions = [caption for index, caption in enumerate(world.unlearning_captions()) if index % 7]
    own = set(name_token_ids(processor.tokenizer, names))
    source = token_embedding(model)
    print("setting | lr | rows moved | name tokens | of the most moved that many, name tokens | worst rank of a name "
          "token | s\n--- | --- | --- | --- | --- | --- | ---")
    for setting, learning_rate in SETTINGS:
        unlearner = BackdoorUnlearner(copy.deepcopy(model), processor)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as output_dir:
            unlearner.unlearn(names, captions=captions, output_dir=output_dir, disable_tqdm=True, report_to="none",
                              seed=options.seed, **{**DEMO_TEXT_SETTINGS, "learning_rate": learning_rate,
                                                    "trainable_parameters": setting})
        change = (token_embedding(unlearner.model) - source).norm(dim=1)
        order = change.argsort(descending=True).tolist()
        worst = max(order.index(token) for token in own)
        print(f"{setting} | {learning_rate:g} | {int((change > 0).sum())} | {len(own)} | "
              f"{len(set(order[: len(own)]) & own)} | {worst} | {time.perf_counter() - start:.0f}", flush=True)
    print(machine_line(load_before, os.getloadavg()))


if __name__ == "__main__":
    main()
