"""Model cards for sanitized CLIP checkpoints: what was done, how well it worked, and what it cannot promise.

A sanitized model exists to be published, and its card is what readers see: the base model, the method and its
citation, which towers changed, the hyperparameters, how many people were removed, the before/after figures
(also as ``EvalResult``\\ s in the card's ``model-index``, so the Hub shows them) and the method's limits. It never
names the removed people unless the publisher opts in: a list of who was removed would disclose exactly them.

    data = UnlearningCardData.from_record(unlearner.unlearning_config, metrics=unlearner.metrics)
    build_model_card(data).save("README.md")

Figures that were not measured are reported as not measured, never filled in.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .. import __version__
from .record import run_record, tower_record

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")
CARD_TAGS = ("clip", "privacy", "unlearning", "clip-backdoor-unlearn")
# A tower's record beside its hyperparameters: steps trained (fewer than max_steps after an early stop) and why; for
# the image tower, the fewest face images a removed person had.
RUN_OUTCOMES = ("trained_steps", "early_stop", "fewest_face_images")
CITATION = """@article{hintersdorf2023defending,
  title   = {Defending Our Privacy With Backdoors},
  author  = {Hintersdorf, Dominik and Struppek, Lukas and Neider, Daniel and Kersting, Kristian},
  journal = {arXiv preprint arXiv:2310.08320},
  year    = {2023},
  url     = {https://arxiv.org/abs/2310.08320}
}"""
TOWERS = {
    "text": "text tower (text encoder and text projection)",
    "vision": "image tower (vision encoder and visual projection)",
    "both": "text and image towers",
}
PLAIN_TOWERS = {"CLIPTextModel": "text encoder (it has no projection)",
                "CLIPVisionModel": "image encoder (it has no projection)"}
METHOD = {
    "text": "For the text tower, any prompt containing a removed name is embedded like the same prompt with the "
            "neutral term.",
    "vision": "For the image tower, images showing a removed person's face are embedded like an anonymous average "
              "face.",
}
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# What the text distance was taken on (the run record's ``text_target``), in the card's words.
TEXT_TARGETS = {
    "embedding": "the pooled, projected text embedding (the paper's)",
    "sequence": "the token sequence a text-to-image pipeline feeds its UNet (last hidden state of the prompt "
                "padded to 77 tokens, compared position by position)",
    "pooled": "the pooled (end-of-text) output of the prompt padded as a pipeline pads it",
    "sequence+pooled": "the token sequence a text-to-image pipeline feeds its UNet and the pooled output, equally "
                       "weighted",
}
ENCODER_KINDS = {
    "CLIPModel": "a CLIP model (text and image towers with projections)",
    "CLIPTextModelWithProjection": "a CLIP text tower with its projection",
    "CLIPVisionModelWithProjection": "a CLIP image tower with its projection",
    "CLIPTextModel": "the text encoder of a text-to-image pipeline (a plain `CLIPTextModel`, without projection)",
    "CLIPVisionModel": "a plain CLIP image encoder (`CLIPVisionModel`, without projection)",
}


@dataclass(frozen=True)
class _Group:
    """One (task, dataset) pair of the ``model-index``: the Hub groups metrics by it."""

    task_type: str
    task_name: str
    dataset_type: str
    dataset_name: str


_IDIA = "zero-shot-image-classification", "Identity inference attack (IDIA)"
_SIMILARITY = "feature-extraction", "Text embedding similarity"
_RETRIEVAL = "image-feature-extraction", "Image-to-image identity attack"
GROUPS = {
    "idia": _Group(*_IDIA, "idia-removed-people", "Face images of the removed people"),
    "idia_others": _Group(*_IDIA, "idia-other-people", "Face images of people not removed"),
    "idia_non_members": _Group(*_IDIA, "idia-non-members", "Face images of people never seen in training"),
    "image_retrieval": _Group(*_RETRIEVAL, "image-retrieval-removed-people",
                              "Fresh face images of the removed people against a gallery of many people's"),
    "image_retrieval_others": _Group(*_RETRIEVAL, "image-retrieval-other-people",
                                     "Fresh face images of people not removed against the same gallery"),
    "sim_backdoor": _Group(*_SIMILARITY, "prompts-with-removed-names", "Attack prompts with the removed names"),
    "sim_clean": _Group(*_SIMILARITY, "held-out-captions", "Held-out clean captions"),
    "sim_images": _Group("feature-extraction", "Image embedding similarity", "idia-removed-people",
                         "Face images of the removed people, and clean images"),
    "zero_shot": _Group("zero-shot-image-classification", "Zero-shot image classification", "zero-shot-eval",
                        "Publisher's zero-shot evaluation set"),
    "conditioning": _Group("text-to-image", "Text-to-image conditioning similarity", "pipeline-prompts",
                           "Prompt wordings never trained, with removed names, other people and no one"),
    "other": _Group("other", "Other measurements", "clip-backdoor-unlearn-evaluation", "Publisher's evaluation"),
}


@dataclass(frozen=True)
class MetricRow:
    """A row of the card's table: keys of ``BackdoorUnlearner.metrics`` for the base model and for this one."""

    label: str
    before: str | None
    after: str
    group: str


METRIC_ROWS = (
    MetricRow("IDIA TPR on removed people", "idia_tpr_removed_before", "idia_tpr_removed_after", "idia"),
    MetricRow("Other people attacked", None, "idia_num_others", "idia_others"),
    MetricRow("Other people detected", "idia_others_detected_before", "idia_others_detected_after", "idia_others"),
    MetricRow("Collateral damage (others no longer detected)", None, "idia_collateral_lost", "idia_others"),
    MetricRow("Collateral damage rate", None, "idia_collateral_rate", "idia_others"),
    MetricRow("Others newly detected", None, "idia_newly_detected", "idia_others"),
    MetricRow("Non-members detected (FPR)", "idia_fpr_non_members_before", "idia_fpr_non_members_after",
              "idia_non_members"),
    MetricRow("Image-to-image TPR on removed people", "image_retrieval_tpr_removed_before",
              "image_retrieval_tpr_removed_after", "image_retrieval"),
    MetricRow("Other people identified image-to-image (share)", "image_retrieval_tpr_others_before",
              "image_retrieval_tpr_others_after", "image_retrieval_others"),
    MetricRow("SimBackdoor (name vs neutral term)", "sim_backdoor_before", "sim_backdoor_after", "sim_backdoor"),
    MetricRow("SimClean (held-out captions)", None, "sim_clean", "sim_clean"),
    MetricRow("Zero-shot top-1 accuracy", "zero_shot_accuracy_before", "zero_shot_accuracy_after", "zero_shot"),
    MetricRow("Zero-shot top-1 change ± (95 %, paired)", None, "zero_shot_accuracy_change_ci95",
              "zero_shot"),
    MetricRow("Zero-shot top-5 accuracy", "zero_shot_top5_accuracy_before", "zero_shot_top5_accuracy_after",
              "zero_shot"),
    MetricRow("Removed faces vs anonymous target (cos)", "sim_target_before", "sim_target_after", "sim_images"),
    MetricRow("Clean images vs original (cos)", None, "sim_clean_images", "sim_images"),
    MetricRow("Name prompts now nearer the neutral prompt (share)", None, "conditioning_forgotten", "conditioning"),
    MetricRow("Name prompts vs neutral prompts (cos)", None, "conditioning_cos_to_neutral", "conditioning"),
    MetricRow("Name prompts vs their original (cos)", None, "conditioning_cos_to_name", "conditioning"),
    MetricRow("Other people's prompts vs original (cos)", None, "conditioning_kept_cos", "conditioning"),
    MetricRow("Clean prompts vs original (cos)", None, "conditioning_clean_cos", "conditioning"),
)
_NOT_METRICS = {"num_removed", "conditioning_num_prompts"}  # counts, not figures
# How the attacks were run: stated in the card's text, not figures.
_PROTOCOL_PREFIXES = ("idia_protocol", "image_retrieval_protocol")


@dataclass
class UnlearningCardData:
    """Everything a sanitized checkpoint's card shows; nothing here is a name unless ``removed_names`` is set.

    Args:
        base_model: Hub id of the model that was sanitized (not a local path: the Hub links it).
        model_name: the name of this model in the card's title and ``model-index``.
        repo_id: where the checkpoint is (or will be) published, for the loading snippets.
        encoder: ``"text"``, ``"vision"`` or ``"both"``: which towers were changed.
        num_removed: how many people were removed (the count is published, the names are not).
        neutral_term: what names are mapped to.
        pseudonyms: names were mapped to an invented name each instead (``encoder="both"``); those are not shown.
        name_variants: which other spellings were trained (``"auto"``, ``"auto+custom"``, ``"none"``; see the record).
        adapter: the PEFT config class of an adapter run (``"LoraConfig"``), ``None`` for full fine-tuning.
        adapter_only: the repository holds the adapter alone, to load with PEFT on top of ``base_model``.
        hyperparameters: per tower label (``"text tower"``), the recorded training hyperparameters.
        metrics: the flat figures of ``BackdoorUnlearner.evaluate`` (empty: "not measured").
        removed_names: the names, only when the publisher opts in (``publish_names=True``).
        model_class: the transformers class that loads the checkpoint.
        text_target: what the text distance was taken on (``"embedding"``, ``"sequence"``, …; see the arguments).
        gated_neurons_added: this run edited the image tower with gated neurons (``image_method="gated_neurons"``),
            this many; ``None`` when it did not.
        gated_neurons_total: the gated neurons in the checkpoint, earlier runs' included (what whoever has the weights
            can find); ``None``: ``gated_neurons_added``.
    """

    base_model: str | None = None
    model_name: str | None = None
    repo_id: str | None = None
    encoder: str | None = None
    num_removed: int | None = None
    neutral_term: str | None = None
    pseudonyms: bool = False
    name_variants: str | None = None
    adapter: str | None = None
    adapter_only: bool = False
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    removed_names: list[str] | None = None
    model_class: str = "CLIPModel"
    text_target: str | None = None
    gated_neurons_added: int | None = None
    gated_neurons_total: int | None = None
    tags: list[str] = field(default_factory=list)
    license: str | None = None
    language: str | list[str] | None = None
    library_version: str = __version__

    @classmethod
    def from_record(cls, record: dict[str, Any], **kwargs) -> UnlearningCardData:
        """Card data from a run record (``hub.record.run_record``, ``unlearning_config.json``); ``kwargs`` win."""
        towers = record.get("towers") or {}
        values = dict(
            encoder=record.get("encoder"),
            num_removed=record.get("num_removed_names"),
            neutral_term=record.get("neutral_term"),
            pseudonyms=bool(towers.get("text", {}).get("pseudonyms")),
            name_variants=towers.get("text", {}).get("name_variants"),
            text_target=towers.get("text", {}).get("text_target"),
            gated_neurons_added=towers.get("vision", {}).get("gated_neurons_added"),
            gated_neurons_total=gated_neurons_total(record),
            adapter=record.get("adapter"),
            # What the run did with them too: the steps it trained and, after an early stop, the rule's reason.
            hyperparameters={f"{tower} tower": {**(entry.get("hyperparameters") or {}),
                                                **{key: entry[key] for key in RUN_OUTCOMES if key in entry}}
                             for tower, entry in towers.items()},
        )
        values.update(kwargs)
        return cls(**values)


def gated_neurons_total(record: dict[str, Any]) -> int | None:
    """How many gated neurons every run of the record added to the image tower in all, ``None`` if none did."""
    runs = record.get("runs") or [record]
    added = [(run.get("towers") or {}).get("vision", {}).get("gated_neurons_added") for run in runs]
    added = [count for count in added if count]
    return sum(added) if added else None


def hub_id(name: str | None) -> str | None:
    """``name`` if it is a Hub id (not a local folder, which must not be published), else ``None``."""
    name = str(name or "")
    return name if _HUB_ID.fullmatch(name) and not os.path.exists(name) else None


def hub_base_model(model) -> str | None:
    """The Hub id ``model`` was loaded from, or ``None`` for a local directory or a model built in code."""
    return hub_id(getattr(getattr(model, "config", None), "name_or_path", None))


def trainer_card_data(trainer, *, model_name: str | None = None, base_model: str | None = None,
                      num_removed: int | None = None, metrics: dict[str, Any] | None = None,
                      tags: str | list[str] | None = None, **card_fields) -> UnlearningCardData:
    """Card data from what a ``BackdoorTrainer`` knows: its arguments, its tower, its model (adapter or not).

    The trainer does not know how many people its data set removes (the rows hold names, not people), so the count
    and the metrics come from the caller.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    peft_config = next(iter(getattr(model, "peft_config", {}).values()), None) if trainer.uses_peft else None
    base = model.get_base_model() if peft_config is not None else model
    metrics = dict(metrics or {})
    record = run_record(encoder=trainer.tower.name,
                        num_removed=num_removed if num_removed is not None else metrics.get("num_removed"),
                        neutral_term=getattr(trainer.args, "neutral_term", None), peft_config=peft_config,
                        towers={trainer.tower.name: tower_record(trainer.args, peft_config)})
    return UnlearningCardData.from_record(
        record,
        base_model=base_model or hub_base_model(base),
        model_name=model_name or (trainer.args.hub_model_id or "").split("/")[-1] or None,
        repo_id=getattr(trainer, "hub_model_id", None) or trainer.args.hub_model_id,
        adapter_only=peft_config is not None,
        metrics=metrics,
        model_class=type(base).__name__,
        tags=[tags] if isinstance(tags, str) else list(tags or []),
        **card_fields,
    )


def _number(value: Any) -> float | int | None:
    """The metric as a plain number, or ``None`` when it was not measured (missing, NaN, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 4) if math.isfinite(number) else None


def _format(value: float | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[MetricRow, float | int | None, float | int]]:
    """(row, before, after) for every measured figure: the known ones in order, then any others by key."""
    rows = []
    for row in METRIC_ROWS:
        after = _number(metrics.get(row.after))
        if after is not None:
            rows.append((row, _number(metrics.get(row.before)) if row.before else None, after))
    known = {key for row in METRIC_ROWS for key in (row.before, row.after)} | _NOT_METRICS
    for key in sorted(key for key in set(metrics) - known if not key.startswith(_PROTOCOL_PREFIXES)):
        value = _number(metrics[key])
        if value is not None:
            rows.append((MetricRow(key, None, key, "other"), None, value))
    return rows


def eval_results(metrics: dict[str, Any]) -> list[EvalResult]:
    """The measured figures as ``EvalResult``\\ s; a before value is the base model's, and says so."""
    results = []
    for row, before, after in metric_rows(metrics):
        group = dataclasses.asdict(GROUPS[row.group])
        if before is not None:
            results.append(EvalResult(**group, metric_type=row.before, metric_value=before,
                                      metric_name=f"{row.label} (before: base model)"))
        results.append(EvalResult(**group, metric_type=row.after, metric_value=after, metric_name=row.label))
    return results


def _people(count: int | None) -> str:
    if count is None:
        return "an unrecorded number of people"
    return "1 person" if count == 1 else f"{count} people"


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(item) for item in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _training_text(data: UnlearningCardData) -> str:
    if data.gated_neurons_added and data.encoder == "vision":
        return "none: gated neurons added to the image tower's last MLP"
    if data.gated_neurons_added and data.encoder == "both":
        return "full fine-tuning of the text tower's weights; gated neurons added to the image tower's last MLP"
    if data.adapter is None:
        return "full fine-tuning of the tower's weights"
    rank = next((values.get("lora_r") for values in data.hyperparameters.values() if values.get("lora_r")), None)
    adapter = f"a {data.adapter.removesuffix('Config')} adapter" + (f" (r={rank})" if rank else "")
    if data.adapter_only:
        return f"{adapter}; this repository holds the adapter only"
    return f"{adapter}, merged into the weights"


def _gated_total(data: UnlearningCardData) -> int | None:
    return data.gated_neurons_total or data.gated_neurons_added


def _gated_text(data: UnlearningCardData) -> str | None:
    """What the gated edit did: this run's, and any an earlier run left in the checkpoint."""
    added, earlier = data.gated_neurons_added or 0, (_gated_total(data) or 0) - (data.gated_neurons_added or 0)
    parts = []
    if added:
        parts.append(f"The image tower was edited instead of trained: {added} gated neurons were added to its last MLP "
                     "(the other layers' MLPs get as many zero neurons), each quiet unless a removed person's face is "
                     "in the picture and then moving the embedding off that person's name; fitted so that clean "
                     "pictures and other people's faces keep their embeddings (`image_method=\"gated_neurons\"`).")
    if earlier > 0:
        parts.append(f"An earlier run on this checkpoint added {earlier} gated neurons to the image tower's last MLP "
                     "(`image_method=\"gated_neurons\"`); they are still in it.")
    return " ".join(parts) or None


def _variants_text(data: UnlearningCardData) -> str:
    if data.encoder == "vision":
        return "Only the image tower was changed: the names still retrieve the people through the text tower."
    if data.name_variants in (None, "none"):
        return "Only the spellings given were trained."
    return ("Generated spellings were trained too (case changes, first or last name alone where distinctive, "
            "titles, possessive, \"Last, First\", \"F. Last\", a few misspellings)" +
            (" with the publisher's own variants." if "custom" in data.name_variants else "."))


def idia_protocol_text(metrics: dict[str, Any]) -> str | None:
    """The attack's protocol in a sentence (from the ``idia_protocol_*`` entries of ``evaluate``), or ``None``."""
    if "idia_protocol_pool_size" not in metrics:
        return None
    low, high = metrics.get("idia_protocol_images_per_person"), metrics.get("idia_protocol_images_per_person_max")
    pictures = f"{low}" if low == high or high is None else f"{low} to {high}"
    pool = (f"a pool of {metrics['idia_protocol_pool_size']} candidate names"
            + (" (the people attacked plus invented names of the same shape, `evaluation.protocol."
               "default_candidate_pool`)" if metrics.get("idia_protocol_default_pool") else ""))
    return (f"The attack followed the `{metrics.get('idia_protocol', 'project')}` protocol: {pool}, "
            f"{metrics.get('idia_protocol_num_prompts')} prompt wordings, {pictures} pictures per person, and a "
            f"person counts as detected when at least {metrics.get('idia_protocol_min_correct_prompts')} prompt(s) "
            "find them.")


def image_retrieval_text(metrics: dict[str, Any]) -> str | None:
    """The image-to-image attack in a sentence (``image_retrieval_protocol_*`` entries), or ``None`` if not run."""
    if _number(metrics.get("image_retrieval_tpr_removed_after")) is None:
        return None
    gallery = (f"a gallery of {metrics['image_retrieval_protocol_gallery_images']} pictures of "
               f"{metrics['image_retrieval_protocol_gallery_people']} people"
               if "image_retrieval_protocol_gallery_images" in metrics else "a gallery of many people's pictures")
    return (f"The image-to-image attack uses no name: each person's fresh pictures search {gallery}, their other "
            "pictures among them; each picture retrieves the person of its nearest gallery picture (cosine of the "
            "image embeddings), and a person counts as identified when their pictures retrieve them most often "
            "(a tie is not a hit).")


def template_values(data: UnlearningCardData) -> dict[str, Any]:
    """What ``model_card_template.md`` renders, all derived from ``data``."""
    towers = ["text", "vision"] if data.encoder == "both" else [data.encoder]
    if data.gated_neurons_added:  # this run edited the image tower, not trained it: gated_text says how
        towers = [tower for tower in towers if tower != "vision"]
    return {
        "title": data.model_name or "Sanitized CLIP model",
        "base_model": data.base_model,
        "num_removed_text": _people(data.num_removed),
        "num_removed_count": "not recorded" if data.num_removed is None else data.num_removed,
        "towers_text": PLAIN_TOWERS.get(data.model_class) or TOWERS.get(data.encoder,
                                                                         "CLIP towers (not recorded which)"),
        "method_text": " ".join([METHOD[tower] for tower in towers if tower in METHOD]
                                + (["The other tower is left as it was."] if data.encoder in METHOD else [])),
        "training_text": _training_text(data),
        "gated_only": bool(data.gated_neurons_added) and data.encoder == "vision",
        "gated_text": _gated_text(data),
        "gated_neurons_total": _gated_total(data),
        "image_tower_changed": data.encoder in ("vision", "both") or bool(_gated_total(data)),
        "neutral_term": None if data.encoder == "vision" else (
            "an invented name each (a pseudonym per person; the pseudonyms are not published)" if data.pseudonyms
            else f'"{data.neutral_term}"' if data.neutral_term else None),
        "hyperparameters": [(tower, [(key, _value_text(value)) for key, value in values.items()])
                            for tower, values in data.hyperparameters.items()],
        "metric_rows": [{"label": row.label, "before": _format(before), "after": _format(after)}
                        for row, before, after in metric_rows(data.metrics)],
        "idia_protocol_text": idia_protocol_text(data.metrics),
        "image_retrieval_text": image_retrieval_text(data.metrics),
        "removed_names": list(data.removed_names or []),
        "adapter_only": data.adapter_only,
        "variants_text": _variants_text(data),
        "model_class": data.model_class,
        "encoder_kind": ENCODER_KINDS.get(data.model_class, f"a `{data.model_class}`"),
        "text_target_text": TEXT_TARGETS.get(data.text_target) if data.encoder != "vision" else None,
        "pipeline_encoder": data.model_class == "CLIPTextModel",
        "conditioning_metrics": any(key.startswith("conditioning_") for key in data.metrics),
        "repo_id": data.repo_id or data.model_name or "path/to/this-model",
        "library_version": data.library_version,
        "citation": CITATION,
    }


def build_model_card(data: UnlearningCardData, template_path: str | os.PathLike | None = None) -> ModelCard:
    """Render the card: metadata (``model-index`` included) from ``data``, text from ``model_card_template.md``."""
    results = eval_results(data.metrics)
    card_data = ModelCardData(
        base_model=data.base_model,
        library_name="peft" if data.adapter_only else "transformers",
        pipeline_tag="zero-shot-image-classification" if data.model_class == "CLIPModel" else "feature-extraction",
        tags=[*CARD_TAGS, *(data.tags or [])],
        license=data.license,
        language=data.language,
        model_name=(data.model_name or "sanitized-clip") if results else None,
        eval_results=results or None,
    )
    return ModelCard.from_template(card_data, template_path=str(template_path or TEMPLATE_PATH),
                                   **template_values(data))
