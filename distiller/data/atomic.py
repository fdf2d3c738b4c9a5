"""Files written next to their target and renamed over it, and the temporaries a killed writer left.

A write that is interrupted by an exception removes its temporary file itself; one killed outright
(SIGKILL, SIGTERM) cannot, so the next writer of the same target removes the temporaries whose
process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path


def temp_path(target: str | os.PathLike) -> Path:
    """`.NAME.PID.tmp` beside `target` (the name every atomic writer of mlffd uses)."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def remove_stale_temps(target: str | os.PathLike) -> None:
    """Remove the `.NAME.PID.tmp` files beside `target` whose process no longer runs."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.tmp")
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and not _alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
