"""Attacks by someone who holds the sanitized weights but not the source model, against either image-tower edit.

    python benchmarks/weights_attack.py --world_seed 1 --removed 5 --seed 42 --threads 1 \
        [--set image_method='"gated_neurons"'] --json rows.jsonl

The removed people are removed as ``benchmarks/image_tower.py`` removes them (the demo's settings over the
library's defaults), then the edited model is attacked twice, each time from the edited weights:

- ablation: the last MLP's neurons that write least into the class token over 512 clean pictures, two per removed
  person (as many as the gated edit adds), are zeroed; a local edit is easy to find this way;
- relearning: the image tower (all of it) is fine-tuned on *other* people's named pictures (the kept members'
  ``train`` pictures, classified among their names with the frozen text tower), as someone with a public face–name
  set would, for each ``--relearn_lrs`` × ``--relearn_steps``. Nothing of the removed people is used.

Each attack reports the IDIA's TPR on the removed people's fresh pictures, the other members found and the
non-members falsely found (a relearning that names everyone is not a recovery). Rows hold counts and rates, never a
name.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPModel

sys.path.insert(0, str(Path(__file__).parent))
import gated_neurons  # noqa: E402  (the benchmarks beside this one)
import image_tower  # noqa: E402

from clip_backdoor_unlearn.data.images import load_images  # noqa: E402
from clip_backdoor_unlearn.evaluation import identity_inference_attack  # noqa: E402
from clip_backdoor_unlearn.training.embeddings import image_embeddings, text_embeddings  # noqa: E402
from clip_backdoor_unlearn.training.gated_neurons import class_token_features  # noqa: E402


def attack_row(model, cell, removed: list[str]) -> dict:
    """The IDIA on the ``eval`` pictures: TPR on the removed, other members found, non-members falsely found."""
    result = identity_inference_attack(model, cell.processor, cell.faces["eval"], cell.world.candidate_names)
    gone = set(removed)
    others = [name for name in cell.world.member_names if cell.before.detected[name] and name not in gone]
    return {"tpr": round(result.tpr(removed), 4), "others": sum(result.detected[name] for name in others),
            "fpr_non_members": round(result.tpr(cell.world.non_member_names), 4)}


def ablate_quietest(model, processor, clean: list, count: int, seed: int):
    """A copy of ``model`` with the ``count`` last-MLP neurons that write least on 512 clean pictures zeroed."""
    edited = copy.deepcopy(model)
    sample = random.Random(seed).sample(clean, min(512, len(clean)))
    features = class_token_features(edited, processor.image_processor, iter(sample))
    quiet = gated_neurons.least_used(edited, gated_neurons.activations(edited, features), count)
    with torch.no_grad():
        edited.vision_model.encoder.layers[-1].mlp.fc2.weight[:, quiet] = 0
    return edited


def relearn(model, processor, pictures, names: list[str], steps: int, learning_rate: float, seed: int,
            batch_size: int = 32):
    """A copy of ``model`` whose image tower was fine-tuned ``steps`` steps to name these pictures among ``names``
    ("a photo of {name}", the frozen text tower), AdamW at ``learning_rate``."""
    edited = copy.deepcopy(model)
    torch.manual_seed(seed)
    with torch.no_grad():
        text = processor.tokenizer([f"a photo of {name}" for name in names], padding=True, return_tensors="pt")
        targets = F.normalize(text_embeddings(edited, text["input_ids"], text["attention_mask"]), dim=-1)
    index = {name: position for position, name in enumerate(names)}
    labels = torch.tensor([index[name] for name in pictures["name"]])
    images = pictures["image"]
    trainable = [*edited.vision_model.parameters(), *edited.visual_projection.parameters()]
    for parameter in trainable:  # the unlearned model comes back frozen
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    generator = random.Random(seed)
    edited.train()
    for _ in range(steps):
        batch = generator.sample(range(len(labels)), batch_size)
        inputs = processor.image_processor([images[i] for i in batch], return_tensors="pt")
        embedded = F.normalize(image_embeddings(edited, inputs["pixel_values"]), dim=-1)
        loss = F.cross_entropy(edited.logit_scale.exp().detach() * embedded @ targets.T, labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    edited.eval()
    return edited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    image_tower.add_world_arguments(parser)
    parser.add_argument("--set", nargs="*", default=[], help="field=json overrides of the image tower's arguments")
    parser.add_argument("--relearn_lrs", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--relearn_steps", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--edited", help="a folder: the edited model is loaded from it if there, else saved to it")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    cell = image_tower.baseline(options.size, options.world_seed, options.removed, None)
    overrides = image_tower.field_values(options.set)
    removed, processor = cell.removed, cell.processor
    if options.edited and Path(options.edited).exists():
        edited, seconds = CLIPModel.from_pretrained(options.edited).eval(), 0.0
    else:
        unlearner, seconds = image_tower.unlearn_cell(cell, options.seed, "vision", overrides)
        edited = unlearner.model
        if options.edited:
            edited.save_pretrained(options.edited)
    row = {"size": options.size, "world": options.world_seed, "removed": len(removed), "seed": options.seed,
           "overrides": overrides, "unlearn_s": round(seconds), "after": attack_row(edited, cell, removed)}

    clean = load_images(cell.world.vision_unlearning_inputs(removed)["images"], "images")
    start = time.perf_counter()
    row["ablation"] = attack_row(ablate_quietest(edited, processor, clean, 2 * len(removed), options.seed),
                                 cell, removed)
    row["ablation"]["seconds"] = round(time.perf_counter() - start)
    print({key: row[key] for key in ("after", "ablation")}, flush=True)

    gone = set(removed)
    kept = [name for name in cell.world.member_names if name not in gone]
    kept_names = set(kept)
    pictures = cell.faces["train"].filter(lambda name: name in kept_names, input_columns=["name"])
    row["relearn"] = []
    for learning_rate in options.relearn_lrs:
        for steps in options.relearn_steps:
            start = time.perf_counter()
            relearned = relearn(edited, processor, pictures, kept, steps, learning_rate, options.seed)
            row["relearn"].append({"lr": learning_rate, "steps": steps, **attack_row(relearned, cell, removed),
                                   "seconds": round(time.perf_counter() - start)})
            print(row["relearn"][-1], flush=True)
    image_tower.emit(row, options.json)


if __name__ == "__main__":
    main()
