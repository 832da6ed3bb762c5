"""The identity inference attack (IDIA) as an ``evaluate`` metric: TPR from the attack's per-image votes.

Inputs, one row per image and prompt (``clip_backdoor_unlearn.evaluation.idia.attack_predictions`` makes them):
``predictions`` (the candidate name the model picked, "" on a tie), ``references`` (the person in the image),
``prompt_ids`` (the prompt's index). Per person and prompt the images vote; a person is detected when at least
``min_correct_prompts`` prompts' unique winner is them (the package's ``person_verdict``).
"""

from __future__ import annotations

import datasets
import evaluate
import torch

from clip_backdoor_unlearn.evaluation.idia import ABSTAIN, person_verdict

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the candidate picked for one image under one prompt ("" when the model abstains).
    references (list of str): the person shown in that image.
    prompt_ids (list of int): the prompt's index.
    min_correct_prompts (int): τ, prompts that must find a person for them to count as detected (default 1).
    removed_names (list of str, optional): also report ``tpr_removed`` over these people.
Returns:
    tpr: share of the people detected; num_people, num_detected; tpr_removed with removed_names.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class IDIA(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Hintersdorf et al., Does CLIP Know My Face? (arXiv 2209.07341)",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string"),
                                        "prompt_ids": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, prompt_ids, min_correct_prompts: int = 1, removed_names=None):
        names = sorted({*references, *(name for name in predictions if name)})
        index = {name: position for position, name in enumerate(names)}
        num_prompts = max(prompt_ids) + 1
        votes: dict[str, dict[int, list[int]]] = {}
        for prediction, reference, prompt in zip(predictions, references, prompt_ids, strict=True):
            votes.setdefault(reference, {}).setdefault(prompt, []).append(index[prediction] if prediction else ABSTAIN)
        detected = {}
        for person, by_prompt in votes.items():
            counts = {len(column) for column in by_prompt.values()}
            if len(by_prompt) != num_prompts or len(counts) != 1:
                raise ValueError("Every image needs one row per prompt.")
            table = torch.tensor([by_prompt[prompt] for prompt in range(num_prompts)]).T  # (images, prompts)
            detected[person] = person_verdict(table, index[person], len(names), min_correct_prompts)[2]
        result = {"tpr": sum(detected.values()) / len(detected), "num_people": len(detected),
                  "num_detected": sum(detected.values())}
        if removed_names is not None:
            removed = [name for name in removed_names if name in detected]
            result["tpr_removed"] = sum(detected[name] for name in removed) / len(removed) if removed else 0.0
        return result
