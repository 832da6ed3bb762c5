"""The gated-neuron edit of the image tower (``image_method="gated_neurons"``), with what the library does not offer.

    python benchmarks/gated_neurons.py --world_seed 0 --removed 16 --zero_shot_per_class 200 54 --threads 1

The edit itself is the library's (``training.gated_neurons``: the pictures, the features, the fit, the wider MLPs);
``benchmarks/image_tower.py --set image_method='"gated_neurons"'`` measures it through ``unlearn``. This probe
fits it directly, so its settings can go past the arguments' (``--copies``, ``--pasted``, ``--kept``), and adds:
``--slots reuse`` replaces the last MLP's least-used neurons instead of adding new ones (the config unchanged), and
``--ablation_attack`` attacks as someone with the weights would: the last MLP's neurons that write least on clean
pictures, as many as the edit has, are zeroed and the IDIA runs again (a local edit is easy to find).

Measured as image_tower.py: the IDIA's TPR on the removed people's ``eval`` pictures, the other members found
before and after, zero-shot change in points with its paired 95 % half-width, the image-to-image attack.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

import torch
from transformers import CLIPModel

sys.path.insert(0, str(Path(__file__).parent))
import image_tower  # noqa: E402  (the benchmark beside this one)

from clip_backdoor_unlearn import VisionBackdoorTrainingArguments  # noqa: E402
from clip_backdoor_unlearn.data.images import faces_per_person, load_images  # noqa: E402
from clip_backdoor_unlearn.evaluation import (  # noqa: E402
    identity_inference_attack, paired_accuracy_change, zero_shot_hits)
from clip_backdoor_unlearn.evaluation.unlearning import evaluate_unlearning  # noqa: E402
from clip_backdoor_unlearn.training.arguments import GATED_SCHEDULES  # noqa: E402
from clip_backdoor_unlearn.training.embeddings import encode_images  # noqa: E402
from clip_backdoor_unlearn.training.gated_neurons import (  # noqa: E402
    COPIES, KEPT, PASTED, Features, GatedHead, GatedNeurons, add_gated_neurons, class_token_features, edit_pictures,
    fit_gated_neurons, held_kept_weight)
from clip_backdoor_unlearn.training.jobs import name_targets  # noqa: E402


def activations(model: CLIPModel, features: Features) -> torch.Tensor:
    """The last MLP's activations for these class tokens."""
    mlp = model.vision_model.encoder.layers[-1].mlp
    with torch.no_grad():
        return mlp.activation_fn(mlp.fc1(features.z))


def least_used(model: CLIPModel, active: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` neurons of the last MLP that write least into the class token over these pictures
    (mean |activation| × the norm of what each writes)."""
    writes = model.vision_model.encoder.layers[-1].mlp.fc2.weight.norm(dim=0)
    return (active.abs().mean(0) * writes).argsort()[:count]


def without(model: CLIPModel, features: Features, active: torch.Tensor, slots: torch.Tensor) -> Features:
    """``features`` less what the neurons ``slots`` wrote into the class token."""
    fc2 = model.vision_model.encoder.layers[-1].mlp.fc2.weight
    with torch.no_grad():
        return Features(features.z, features.base - active[:, slots] @ fc2[:, slots].T)


@torch.no_grad()
def reused(model: CLIPModel, slots: torch.Tensor, neurons: GatedNeurons) -> CLIPModel:
    """A copy of ``model`` with its last MLP's neurons ``slots`` replaced by ``neurons``: the same architecture."""
    edited = copy.deepcopy(model)
    mlp = edited.vision_model.encoder.layers[-1].mlp
    mlp.fc1.weight[slots], mlp.fc1.bias[slots], mlp.fc2.weight[:, slots] = neurons.read, neurons.bias, neurons.write.T
    return edited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    image_tower.add_world_arguments(parser)
    library = VisionBackdoorTrainingArguments  # the fit's defaults are the library's
    parser.add_argument("--per_person", type=int, default=library.gated_neurons_per_person,
                        help="new neurons a removed person")
    parser.add_argument("--steps", type=int, default=library.gated_steps)
    parser.add_argument("--lr", type=float, default=library.gated_learning_rate)
    parser.add_argument("--lr_scheduler_type", choices=GATED_SCHEDULES, default=library.gated_lr_scheduler_type)
    parser.add_argument("--kept_weight", type=float, default=library.gated_kept_weight)
    parser.add_argument("--margin", type=float, default=library.gated_margin,
                        help="below the anonymous threshold by this much")
    parser.add_argument("--feature_noise", type=float, default=library.gated_feature_noise,
                        help="noise along the removed people's within-person scatter")
    parser.add_argument("--pair_noise", type=float, default=library.gated_pair_noise,
                        help="moves along each removed picture's difference from another of its person's")
    parser.add_argument("--copies", type=int, default=COPIES, help="augmented full-size copies of each removed picture")
    parser.add_argument("--pasted", type=int, default=PASTED, help="removed faces pasted on clean pictures")
    parser.add_argument("--kept", type=int, default=KEPT, help="clean pictures kept (and half as many pasted faces)")
    parser.add_argument("--face_images_per_person", type=int, default=0)
    parser.add_argument("--slots", choices=["new", "reuse"], default="new",
                        help="new neurons (a wider MLP) or the last MLP's least-used ones replaced (the same shape)")
    parser.add_argument("--ablation_attack", action="store_true",
                        help="also attack as someone with the weights would: zero as many of the last MLP's neurons as "
                             "the edit has, those that write least on clean pictures, and run the IDIA again")
    parser.add_argument("--zero_shot_per_class", type=int, nargs=2, metavar=("SHAPES", "DIGITS"))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    model, processor, world, faces, before, removed, pictures, hits_before = image_tower.baseline(
        options.size, options.world_seed, options.removed, options.zero_shot_per_class)

    start = time.perf_counter()
    inputs = world.vision_unlearning_inputs(removed)
    face_images = inputs["face_images"]
    if options.face_images_per_person:
        face_images = image_tower.first_per_person(face_images, options.face_images_per_person)
    given = faces_per_person(face_images, removed)
    references = load_images(inputs["reference_faces"], "reference_faces")
    clean = load_images(inputs["images"], "images")
    removed_pictures, people, kept_pictures = edit_pictures(
        [face for person in given for face in person], [index for index, person in enumerate(given) for _ in person],
        clean, references, options.seed, copies=options.copies, pasted=options.pasted, kept=options.kept)
    image_processor = processor.image_processor
    removed_features = class_token_features(model, image_processor, removed_pictures)
    kept_features = class_token_features(model, image_processor, kept_pictures)
    slots = None
    if options.slots == "reuse":
        kept_active = activations(model, kept_features)
        slots = least_used(model, kept_active, options.per_person * len(removed))
        removed_features = without(model, removed_features, activations(model, removed_features), slots)
        kept_features = without(model, kept_features, kept_active, slots)
    with torch.no_grad():
        reference_embeddings = encode_images(model, image_processor, references)
        names, thresholds = name_targets(model, processor.tokenizer, removed, reference_embeddings)
    neurons, log = fit_gated_neurons(
        model, removed_features, torch.tensor(people), names, thresholds, kept_features,
        per_person=options.per_person, margin=options.margin, steps=options.steps,
        kept_weight=held_kept_weight(options.kept_weight, len(removed)),  # as the library: held below 5 people
        learning_rate=options.lr, lr_scheduler_type=options.lr_scheduler_type, seed=options.seed,
        feature_noise=options.feature_noise, pair_noise=options.pair_noise)
    print(log, flush=True)
    if slots is None:
        edited = copy.deepcopy(model)
        add_gated_neurons(edited, neurons)
    else:
        edited = reused(model, slots, neurons)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        check = [picture for person in given for picture in person][:8]
        check_features = class_token_features(model, image_processor, iter(check))
        if slots is not None:
            check_features = without(model, check_features, activations(model, check_features), slots)
        fast = GatedHead(model)(check_features, neurons)
        assert torch.allclose(encode_images(edited, image_processor, check), fast, atol=1e-4), \
            "the edited model does not compute the fitted edit"

    metrics = evaluate_unlearning(model, edited, processor, removed, face_images=faces["eval"],
                                  gallery_images=faces["train"], candidate_names=world.candidate_names,
                                  non_member_names=world.non_member_names, idia_before=before)
    hits_after = zero_shot_hits(edited, processor, pictures, templates=world.zero_shot_templates)[1]
    change, half_width = paired_accuracy_change(hits_before, hits_after)
    ablation = {}
    if options.ablation_attack:
        count = len(neurons.read)
        edit = torch.arange(count) + model.config.vision_config.intermediate_size if slots is None else slots
        rng = random.Random(options.seed)
        sample = class_token_features(edited, image_processor, iter(rng.sample(clean, min(512, len(clean)))))
        quiet = least_used(edited, activations(edited, sample), count)
        with torch.no_grad():
            edited.vision_model.encoder.layers[-1].mlp.fc2.weight[:, quiet] = 0
        ablated = identity_inference_attack(edited, processor, faces["eval"], world.candidate_names)
        ablation = {"ablation_tpr": ablated.tpr(removed),
                    "ablation_found_edit": len(set(quiet.tolist()) & set(edit.tolist())) / count}
    settings = {key: getattr(options, key) for key in ("per_person", "steps", "lr", "kept_weight", "margin", "copies",
                                                       "pasted", "kept", "face_images_per_person", "slots")}
    image_tower.emit({
        "method": "gated_neurons", "size": options.size, "world": options.world_seed, "removed": len(removed),
        "seed": options.seed, "settings": settings, "tpr_after": metrics["idia_tpr_removed_after"],
        "others_before": metrics["idia_others_detected_before"], "others_after": metrics["idia_others_detected_after"],
        "zero_shot_change": round(100 * change, 2), "zero_shot_ci95": round(100 * half_width, 2),
        "i2i_removed_after": metrics["image_retrieval_tpr_removed_after"],
        "i2i_others_after": metrics["image_retrieval_tpr_others_after"], "fit_s": round(seconds), **log, **ablation,
    }, options.json)


if __name__ == "__main__":
    main()
