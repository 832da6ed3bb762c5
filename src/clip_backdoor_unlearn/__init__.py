"""Remove named people from CLIP models with student-teacher backdoors (arXiv 2310.08320)."""

__version__ = "0.1.0"
