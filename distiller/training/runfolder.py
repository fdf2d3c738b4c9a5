"""The run folder of `mlffd train`: one writer at a time, writable, and strict JSON results.

`Trainer.run` holds the folder for every caller (`mlffd train`, `mlffd distill`, the Python API):
two trainings into one folder at once would leave one run's model beside both runs' metrics rows,
so the second is refused while the first holds the folder's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
from pathlib import Path

from mlffd.errors import MLFFDError


@contextlib.contextmanager
def run_folder(path: str | os.PathLike, option: str = "--out"):
    """Create (if needed) and hold the run folder: an exclusive flock on the folder itself (no
    lock file to leave behind), refused at once if another process holds it."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise MLFFDError(f"{option} {folder} exists and is not a directory; give a run folder (new or to resume)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # writable (root ignores permission bits, not read-only mounts)
            pass
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise MLFFDError(f"cannot write the run folder {folder}: {exc.strerror or exc}; choose a writable "
                         f"{option}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MLFFDError(f"{folder} is in use by another training (it holds the folder's lock); wait for it "
                             f"to finish or choose another {option}") from None
        yield folder
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def finite_json(value):
    """`value` with NaN and infinities as null: metrics.json must be strict JSON (an r2 of frames
    whose teacher forces are all zero is undefined, not the token NaN that strict parsers refuse)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
