"""Training: the arguments, the student–teacher trainers of each tower, and what they share.

    arguments.py       BackdoorTrainingArguments, VisionBackdoorTrainingArguments
    trainer.py         BackdoorTrainer (text tower; the loss, the teacher, the schedule)
    vision_trainer.py  VisionBackdoorTrainer (image tower)
    towers.py          which parameters make up a tower; frozen teacher copies
    embeddings.py      the embeddings both training and evaluation compare
    jobs.py            one unlearn() call turned into checked, prepared training jobs
    callbacks.py       ForgetMonitorCallback (stop once the attack no longer finds the people)
    stopping.py        NeutralTargetStopCallback (stop once the names embed like their targets; no faces)

Nothing is imported here, so evaluation code can use ``embeddings`` without loading the Trainer.
"""
