"""Course tooling, never imported by a notebook: the runner
(`python -m helpers run`, with its robustness mode), student copies
(`python -m helpers student`), the HTML report of a run, and the command that
regenerates model A (`python -m helpers.course.model_a`)."""
