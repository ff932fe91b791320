"""Plumbing shared by the course notebooks: seeding, data, models, diagnostics,
plots, parameter checks, claims, multi-seed runs and the course runner.

The notebooks import what they need from here; the Keras lines that *are* the
lesson stay in the notebooks.
"""

import os

# Before TensorFlow is imported anywhere: keep its C++ start-up logs quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from helpers.claims import claim  # noqa: E402
from helpers.params import Choice, Integer, ListOf, Number, check_parameters  # noqa: E402

__all__ = [
    "Choice",
    "Integer",
    "ListOf",
    "Number",
    "check_parameters",
    "claim",
]
