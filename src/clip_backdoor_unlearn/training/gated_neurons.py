"""Untie removed faces from their names with gated neurons added to the image tower's last MLP; nothing is trained.

``VisionBackdoorTrainingArguments(image_method="gated_neurons")``, and ``"auto"`` (the default) for a ``CLIPModel``
with its tokenizer. Fine-tuning moves the whole tower and costs zero-shot accuracy for each face it unties. This edit
leaves every weight as it is and adds ``gated_neurons_per_person`` neurons per removed person to the last encoder
layer's MLP: a neuron reads the class token as the MLP does (``act(u·z + c)``), stays near zero unless its person's
face is in the picture, and then writes ``v`` into the class token, moving the embedding off the person's name. ``u``,
``c``, ``v`` are fitted by Adam on the original tower's features, computed once: the removed people's pictures (as
given, augmented, pasted on clean pictures) must match their name ``gated_margin`` less than an anonymous face does
(the name target, as training's), clean pictures and other people's faces must keep their embeddings. Each step both
sets are jittered along the removed people's picture-to-picture variation (``gated_feature_noise``), and each removed
picture along its difference from another of its person's (``gated_pair_noise``), at a falling rate
(``gated_lr_scheduler_type``), so that a gate opens on a person's fresh pictures, not only on the fitted ones, and
stays shut on pictures of others that vary as much; ``gated_bias_shift`` then opens every gate more easily. With
``gated_read_prior="within_person"`` and reference faces that say whose they are, each read starts whitened by how
other people's pictures vary and is held near that start (``whitened_starts``). The config's ``intermediate_size`` is
shared by every layer, so the other layers get as many zero neurons and compute what they did. The edit is local:
whoever has the weights can find and remove it, and fine-tuning on other people's named pictures undoes it as it
undoes a fine-tuned tower (docs/method.md, "Gated neurons").
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import torch
from PIL import Image
from torch.nn import functional as F
from transformers import get_scheduler

from ..data.images import FaceAugmentation
from .embeddings import model_device
from .layer_refit import class_token_attention

COPIES = 4
"""Augmented full-frame copies of each given picture of a removed person."""

PASTED = 1024
"""Removed people's faces pasted on clean pictures, at ``SCALE_RANGE`` of the picture's side."""

KEPT = 2048
"""Clean pictures held at their embeddings (all if fewer), plus all reference faces and half as many pasted."""

SCALE_RANGE = (0.6, 1.0)
"""Side of a pasted face as a fraction of the picture's side: the size of the pictures an attack uses."""

BATCH = 128
"""Pictures a forward pass when computing the features."""

NOISE_RANK = 64
"""Directions of the removed people's within-person variation that ``feature_noise`` follows (the largest)."""

WHITENING_RIDGE = 0.1
"""``read_prior="within_person"``: the ridge added to other people's within-person scatter, times its mean variance."""

READ_ANCHOR = 1.0
"""``read_prior="within_person"``: weight of holding each read near its whitened start (relative squared distance)."""

HELD_PEOPLE = {"none": 5, "within_person": 16}
"""With fewer removed people than this (by read prior) the kept weight is raised by ``HELD_PEOPLE[prior] / people``.
Each person's share of the forget term is one over the people, and a gate answers a larger share by opening on kept
pictures; so the weight holds each person's balance as with that many people: 5 for free reads (the fewest the
defaults were tuned on), 16 for held reads, which cannot sharpen and so open sooner (``held_kept_weight``)."""


@dataclass
class GatedNeurons:
    """The fitted neurons: ``read`` ``(m, width)`` and ``bias`` ``(m,)`` gate them, ``write`` ``(m, width)`` is what
    each adds to the class token."""

    read: torch.Tensor
    bias: torch.Tensor
    write: torch.Tensor


@dataclass
class Features:
    """For each picture, from the tower as it is: ``z``, what the last MLP reads for the class token, and ``base``,
    the last layer's class-token output (what ``post_layernorm`` reads), both float32."""

    z: torch.Tensor
    base: torch.Tensor


def _batches(pictures: Iterable[Image.Image], size: int) -> Iterator[list[Image.Image]]:
    iterator = iter(pictures)
    while batch := list(islice(iterator, size)):
        yield batch


class _Captured(Exception):
    """Raised by the hook of ``_last_layer_input`` once it has what it needs: the rest of the forward is skipped."""


def _last_layer_input(vision: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The hidden states the image tower's last encoder layer reads, without keeping every layer's
    (``output_hidden_states`` would: gigabytes a batch for a large tower)."""
    captured = {}

    def hook(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        raise _Captured

    handle = vision.encoder.layers[-1].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        vision(pixel_values=pixel_values)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured["hidden"]


@torch.no_grad()
def class_token_features(model: torch.nn.Module, image_processor, pictures: Iterable[Image.Image]) -> Features:
    """``Features`` of ``pictures``, drawn lazily (so thousands of pasted pictures are never all in memory)."""
    vision, device = model.vision_model, model_device(model)
    dtype, layer = next(model.parameters()).dtype, model.vision_model.encoder.layers[-1]
    zs, bases = [], []
    for batch in _batches(pictures, BATCH):
        pixels = image_processor(images=[picture.convert("RGB") for picture in batch], return_tensors="pt")
        hidden = _last_layer_input(vision, pixels["pixel_values"].to(device=device, dtype=dtype))
        token = class_token_attention(layer, hidden)
        z = layer.layer_norm2(token)
        zs.append(z.float())
        bases.append((token + layer.mlp(z)).float())
    return Features(torch.cat(zs), torch.cat(bases))


def edit_pictures(faces: Sequence[Image.Image], face_people: Sequence[int], clean: Sequence[Image.Image],
                  references: Sequence[Image.Image], seed: int, *, copies: int = COPIES, pasted: int = PASTED,
                  kept: int = KEPT) -> tuple[Iterator[Image.Image], list[int], Iterator[Image.Image], list[int]]:
    """The pictures the edit is fitted on, deterministic for ``seed``: ``(removed, people, kept, kept_references)``,
    where ``removed`` yields the given faces, ``copies`` augmented full-frame copies of each and ``pasted`` pasted
    ones, ``people`` is each one's person, ``kept`` yields ``kept`` clean pictures (all if fewer), every reference
    face as given, then ``kept // 2`` of them pasted, and ``kept_references`` is each kept picture's reference face
    (its index; −1 for a clean picture). Both picture sets are generators, drawn once."""
    rng = random.Random(seed)
    whole, on_clean = FaceAugmentation(scale_range=(1.0, 1.0)), FaceAugmentation(scale_range=SCALE_RANGE)
    copy_draws = [(index, rng.randrange(2**31)) for _ in range(copies) for index in range(len(faces))]
    pastes = [(rng.randrange(len(faces)), rng.randrange(len(clean)), rng.randrange(2**31)) for _ in range(pasted)]
    kept_clean = rng.sample(range(len(clean)), min(kept, len(clean)))
    kept_pastes = [(rng.randrange(len(references)), rng.randrange(len(clean)), rng.randrange(2**31))
                   for _ in range(kept // 2)]
    people = list(face_people) + [face_people[index] for index, _ in copy_draws]
    people += [face_people[index] for index, _, _ in pastes]

    def removed_pictures():
        yield from faces
        for index, draw in copy_draws:
            yield whole.apply(faces[index], faces[index], draw)
        for index, background, draw in pastes:
            yield on_clean.apply(faces[index], clean[background], draw)

    def kept_pictures():
        yield from (clean[index] for index in kept_clean)
        yield from references
        for index, background, draw in kept_pastes:
            yield on_clean.apply(references[index], clean[background], draw)

    kept_references = [-1] * len(kept_clean) + list(range(len(references)))
    kept_references += [index for index, _, _ in kept_pastes]
    return removed_pictures(), people, kept_pictures(), kept_references


class GatedHead(torch.nn.Module):
    """The tower after the last layer's class-token output, in float32: ``post_layernorm`` and the projection, with
    the neurons added to the last MLP's output."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.activation = model.vision_model.encoder.layers[-1].mlp.activation_fn
        self.post_layernorm = _frozen_copy(model.vision_model.post_layernorm)
        self.projection = _frozen_copy(model.visual_projection)

    def forward(self, features: Features, neurons: GatedNeurons) -> torch.Tensor:
        active = self.activation(features.z @ neurons.read.T + neurons.bias)
        return self.projection(self.post_layernorm(features.base + active @ neurons.write))


def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).float().requires_grad_(False)


def _from_own_mean(rows: torch.Tensor, people: torch.Tensor) -> torch.Tensor:
    """How each row differs from the mean of its person's rows (``people``: each row's person, an index)."""
    sums = rows.new_zeros(int(people.max()) + 1, rows.shape[1]).index_add_(0, people, rows)
    counts = torch.bincount(people).clamp(min=1).unsqueeze(1)
    return rows - (sums / counts)[people]


def within_person_scatter(features: Features, people: torch.Tensor, rank: int = NOISE_RANK) -> torch.Tensor:
    """``(rank, z width + base width)``: the top principal directions of how each picture's joint ``(z, base)``
    differs from its person's mean, each scaled by its standard deviation. Noise drawn on them varies a picture about
    as much as a person's pictures vary among themselves."""
    joint = torch.cat([features.z, features.base], 1)
    deviations = _from_own_mean(joint, people)
    _, singular, directions = torch.linalg.svd(deviations, full_matrices=False)
    return (singular[:rank, None] / len(joint) ** 0.5) * directions[:rank]


def _jittered(features: Features, scatter: torch.Tensor, scale: float, generator: torch.Generator) -> Features:
    """``features`` moved by ``scale`` × a fresh standard normal draw on each of ``scatter``'s directions."""
    draw = torch.randn(len(features.z), len(scatter), generator=generator).to(scatter.device)
    noise = scale * draw @ scatter
    width = features.z.shape[1]
    return Features(features.z + noise[:, :width], features.base + noise[:, width:])


def same_person_partners(people: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each picture, the index of a picture of the same person drawn uniformly (itself included)."""
    on_cpu = people.cpu()
    order, counts = torch.argsort(on_cpu, stable=True), torch.bincount(on_cpu)
    starts = torch.cumsum(counts, 0) - counts
    draw = (torch.rand(len(on_cpu), generator=generator) * counts[on_cpu]).long()
    return order[starts[on_cpu] + draw].to(people.device)


def _pair_jittered(features: Features, people: torch.Tensor, scale: float, generator: torch.Generator) -> Features:
    """Each of ``features`` moved along its difference from another picture of its person, by a standard normal
    multiple times ``scale``: the variation that is each person's own, not the pooled one."""
    partners = same_person_partners(people, generator)
    step = scale * torch.randn(len(people), 1, generator=generator).to(features.z.device)
    return Features(features.z + step * (features.z - features.z[partners]),
                    features.base + step * (features.base - features.base[partners]))


def whitened_starts(given: torch.Tensor, given_people: torch.Tensor, kept_mean: torch.Tensor,
                    references: torch.Tensor, reference_people: torch.Tensor,
                    ridge: float = WHITENING_RIDGE) -> torch.Tensor:
    """One read direction per removed person, ``(people, width)``: the mean ``z`` of the person's pictures as given
    less ``kept_mean``, whitened by how other people's pictures (``references``, grouped by ``reference_people``)
    vary around their own person's mean, plus ``ridge`` times that scatter's mean variance (linear discriminant
    analysis). It leans on what sets the person apart, not on what every person's pictures vary in, so with few
    pictures a person it separates their fresh pictures better than the plain mean."""
    deviations = _from_own_mean(references, reference_people)
    scatter = deviations.T @ deviations / len(deviations)
    scatter = scatter + ridge * scatter.diagonal().mean() * torch.eye(len(scatter), device=scatter.device)
    gaps = torch.stack([given[given_people == person].mean(0) - kept_mean
                        for person in range(int(given_people.max()) + 1)])
    return torch.linalg.solve(scatter, gaps.T).T


def fit_gated_neurons(model: torch.nn.Module, removed: Features, people: torch.Tensor, names: torch.Tensor,
                      thresholds: torch.Tensor, kept: Features, *, per_person: int, margin: float,
                      kept_weight: float, steps: int, learning_rate: float, seed: int,
                      feature_noise: float = 0.0, pair_noise: float = 0.0, lr_scheduler_type: str = "constant",
                      read_starts: torch.Tensor | None = None,
                      read_anchor: float = 0.0) -> tuple[GatedNeurons, dict]:
    """Fit ``per_person`` neurons for each person by full-batch Adam on cached features:

    ``mean relu(cos(face, name) − threshold + margin) + kept_weight · (1 − mean cos(kept, kept before))``, where a
    face's ``name`` and ``threshold`` are its person's (``jobs.name_targets``). With ``feature_noise``, each step
    sees both sets moved by fresh noise along the removed people's within-person scatter (``within_person_scatter``,
    times ``feature_noise``), the kept ones held where the tower as it is puts them so moved; with ``pair_noise``, each
    removed picture also moves along its difference from another of its person's (``_pair_jittered``). The learning
    rate follows ``lr_scheduler_type`` (transformers' schedules, no warmup). Each neuron starts reading its person's
    mean ``z`` less the kept pictures' mean, with its bias halfway between the two, and writing nothing; with
    ``read_starts`` (one row per person, ``whitened_starts``), reading that row instead, and ``read_anchor`` times its
    squared distance from its start (relative to the start's) joins the loss. Returns the neurons and the final loss
    terms.
    """
    head = GatedHead(model)
    device = removed.z.device
    names, thresholds, people = names.to(device), thresholds.to(device), people.to(device)
    unedited = GatedNeurons(kept.z.new_zeros(0, kept.z.shape[1]), kept.z.new_zeros(0),
                            kept.z.new_zeros(0, kept.base.shape[1]))
    owner = torch.arange(len(names), device=device).repeat_interleave(per_person)
    if read_starts is not None:  # as measured: the given start exactly, each person's neurons alike
        read = F.normalize(read_starts.to(device)[owner], dim=1)
    else:
        mean_kept = kept.z.mean(0)
        directions = torch.stack([F.normalize(removed.z[people == person].mean(0) - mean_kept, dim=0)
                                  for person in owner.tolist()])
        generator = torch.Generator(device="cpu").manual_seed(seed)
        read = directions + 0.05 * torch.randn(directions.shape, generator=generator).to(device)
    read = read * (4.0 / (removed.z @ read.T).std())  # pre-activations spread over a few units
    start = read.clone()
    own = torch.stack([(removed.z[people == person] @ row).mean() for person, row in zip(owner.tolist(), read)])
    bias = -0.5 * (own + (kept.z @ read.T).mean(0))
    neurons = GatedNeurons(read, bias, torch.zeros(len(owner), kept.base.shape[1], device=device))
    parameters = [neurons.read.requires_grad_(True), neurons.bias.requires_grad_(True),
                  neurons.write.requires_grad_(True)]
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    scheduler = get_scheduler(lr_scheduler_type, optimizer, num_warmup_steps=0, num_training_steps=steps)
    scatter = within_person_scatter(removed, people) if feature_noise else None
    noise_generator = torch.Generator(device="cpu").manual_seed(seed + 1)
    pair_generator = torch.Generator(device="cpu").manual_seed(seed + 2)
    held = kept
    if scatter is None:  # with the noise, each step computes its own
        with torch.no_grad():
            held_teacher = head(kept, unedited)
    with torch.enable_grad():
        for _ in range(steps):
            shown = _pair_jittered(removed, people, pair_noise, pair_generator) if pair_noise else removed
            if scatter is not None:
                shown = _jittered(shown, scatter, feature_noise, noise_generator)
                held = _jittered(kept, scatter, feature_noise, noise_generator)
                with torch.no_grad():
                    held_teacher = head(held, unedited)
            faces = F.normalize(head(shown, neurons), dim=-1)
            forget = torch.relu((faces * names[people]).sum(-1) - thresholds[people] + margin).mean()
            drift = 1 - F.cosine_similarity(head(held, neurons), held_teacher).mean()
            loss = forget + kept_weight * drift
            if read_anchor:
                loss = loss + read_anchor * ((neurons.read - start) ** 2).sum(1).mean() / (start ** 2).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    fitted = GatedNeurons(*(parameter.detach() for parameter in parameters))
    return fitted, {"gated_forget_loss": forget.item(), "gated_kept_drift": drift.item()}


@torch.no_grad()
def add_gated_neurons(model: torch.nn.Module, neurons: GatedNeurons) -> None:
    """Widen every image-tower MLP of ``model`` in place by ``len(neurons.read)`` neurons and raise the config's
    ``intermediate_size`` to match: the last layer's new neurons are ``neurons``, the other layers' are zero."""
    extra = len(neurons.read)
    layers = model.vision_model.encoder.layers
    for index, layer in enumerate(layers):
        fc1, fc2 = layer.mlp.fc1, layer.mlp.fc2
        wider_in = torch.nn.Linear(fc1.in_features, fc1.out_features + extra, device=fc1.weight.device,
                                   dtype=fc1.weight.dtype)
        wider_out = torch.nn.Linear(fc2.in_features + extra, fc2.out_features, device=fc2.weight.device,
                                    dtype=fc2.weight.dtype)
        wider_in.weight.zero_(), wider_in.bias.zero_(), wider_out.weight.zero_()
        wider_in.weight[: fc1.out_features] = fc1.weight
        wider_in.bias[: fc1.out_features] = fc1.bias
        wider_out.weight[:, : fc2.in_features] = fc2.weight
        wider_out.bias.copy_(fc2.bias)
        if index == len(layers) - 1:
            wider_in.weight[fc1.out_features:] = neurons.read
            wider_in.bias[fc1.out_features:] = neurons.bias
            wider_out.weight[:, fc2.in_features:] = neurons.write.T
        for new, old in ((wider_in, fc1), (wider_out, fc2)):
            new.requires_grad_(old.weight.requires_grad)
        layer.mlp.fc1, layer.mlp.fc2 = wider_in, wider_out
    width = layers[0].mlp.fc1.out_features
    model.config.vision_config.intermediate_size = width
    if getattr(model.vision_model, "config", None) is not None:  # the same object in transformers 5, set anyway
        model.vision_model.config.intermediate_size = width


def held_kept_weight(kept_weight: float, people: int, read_prior: str = "none") -> float:
    """The fit's kept weight for ``people`` removed people: ``kept_weight`` times ``HELD_PEOPLE[read_prior] / people``
    below that many people, as given from there on."""
    return kept_weight * max(1.0, HELD_PEOPLE[read_prior] / people)


def gate_faces(model: torch.nn.Module, image_processor, faces_by_person: Sequence[Sequence[Image.Image]],
               clean: Sequence[Image.Image], references: Sequence[Image.Image], names: torch.Tensor,
               thresholds: torch.Tensor, *, per_person: int, margin: float, kept_weight: float, steps: int,
               learning_rate: float, seed: int, lr_scheduler_type: str = "constant", feature_noise: float = 0.0,
               pair_noise: float = 0.0, bias_shift: float = 0.0,
               reference_people: Sequence[int] | None = None) -> dict[str, float]:
    """The whole edit, in place on ``model`` (a ``CLIPModel``): the pictures, their features under the tower as it
    is, the fit (``lr_scheduler_type``, ``feature_noise``, ``pair_noise``: ``fit_gated_neurons``), ``bias_shift``
    added to the fitted biases, the wider MLPs. With ``reference_people`` (each reference face's person), the reads
    start whitened by those people's own variation and are held near that start (``read_prior="within_person"``).
    With few people the kept pictures are held harder (``held_kept_weight``). Returns what to log (final loss terms,
    the kept weight used, neurons added)."""
    faces = [face for person_faces in faces_by_person for face in person_faces]
    face_people = [person for person, person_faces in enumerate(faces_by_person) for _ in person_faces]
    removed, people, kept, kept_references = edit_pictures(faces, face_people, clean, references, seed)
    removed_features = class_token_features(model, image_processor, removed)
    kept_features = class_token_features(model, image_processor, kept)
    starts = None
    if reference_people is not None:
        rows = torch.tensor([index for index, reference in enumerate(kept_references) if reference >= 0])
        owners = torch.tensor([reference_people[kept_references[index]] for index in rows.tolist()])
        given = removed_features.z[: len(faces)]  # the given faces come first
        starts = whitened_starts(given, torch.tensor(face_people, device=given.device), kept_features.z.mean(0),
                                 kept_features.z[rows.to(given.device)], owners.to(given.device))
    kept_weight = held_kept_weight(kept_weight, len(faces_by_person),
                                   "none" if reference_people is None else "within_person")
    neurons, log = fit_gated_neurons(
        model, removed_features, torch.tensor(people), names, thresholds, kept_features, per_person=per_person,
        margin=margin, kept_weight=kept_weight, steps=steps, learning_rate=learning_rate, seed=seed,
        feature_noise=feature_noise, pair_noise=pair_noise, lr_scheduler_type=lr_scheduler_type,
        read_starts=starts, read_anchor=READ_ANCHOR if starts is not None else 0.0)
    add_gated_neurons(model, GatedNeurons(neurons.read, neurons.bias + bias_shift, neurons.write))
    return {**log, "gated_kept_weight": kept_weight, "gated_neurons_added": len(neurons.read)}
