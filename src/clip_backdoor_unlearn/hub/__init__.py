"""Publishing: loading checkpoints, recording what was done, the model card, saving and pushing safely.

    loading.py      a CLIP checkpoint and its processor, from the Hub or a directory
    record.py       the run record (unlearning_config.json) the card is built from
    model_card.py   UnlearningCardData and the card (template: model_card_template.md)
    privacy.py      the scan that keeps removed names out of everything written or pushed
    saving.py       atomic directory writes that never touch the source model
    publishing.py   write_checkpoint / push_checkpoint: the one way out for a sanitized model
    checkpoints.py  finding and checking a Trainer checkpoint to resume from
"""
