"""Data: what the trainers are fed, built deterministically from a seed.

    names.py       checking the names to remove (errors by index, never by name)
    variants.py    other spellings of each name ("Last, First", "F. Last", titles, misspellings…)
    pseudonyms.py  invented names that removed names can be mapped to, and anchor captions
    captions.py    the general caption set shipped with the package
    prompts.py     text backdoor rows: a caption with a name → the same caption with the neutral term
    images.py      image backdoor rows and their collator: faces pasted onto clean images
"""
