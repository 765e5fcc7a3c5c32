"""One run of the data path, from the settings to the end (SPEC §5-12): the hallway between the
command line and the rooms (core/, sources/, sinks/, checkpoint/).

    checks.py     before anything is touched: the paths, the input's kind, checkpointability
    resume.py     the resume decision: a checkpoint matched to the run
    assembly.py   the parts of a run built from the settings (shared by every face)
    batch.py      what travels between the stages: Batch, and a checkpoint's Cut
    steps.py      the stages' work as pure synchronous steps: parse, feed, apply
    cuts.py       when a checkpoint is cut (CutPolicy), and how it is saved
    stages.py     the thin async loops: read, core (the steps on each chunk), write
    report.py     counters, health, progress and the summary
    pipeline.py   the stages wired; start, stop, shutdown deadline; the file job
"""

from l3tol1.run.pipeline import Books, Pipeline, file_job

__all__ = ["Books", "Pipeline", "file_job"]
