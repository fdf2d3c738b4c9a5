"""How an ASE MD run is timed, shared by `mlffd bench`'s worker and the peer bake-off's worker.

It imports nothing from mlffd (only the standard library), because the peer worker runs in a peer's
own environment, where mlffd is not installed, and loads this file by its path (benchmarks/peers/worker.py).
"""

from __future__ import annotations

import statistics
import time


def time_steps(dyn, steps: int, repeats: int = 3, warmup: int = 3) -> dict:
    """Milliseconds per step of `dyn` (an ASE dynamics object): `warmup` steps first (TorchScript
    profiling, allocators, neighbour-list set-up), then the median of `repeats` runs of `steps`."""
    t0 = time.perf_counter()
    dyn.run(warmup)
    warmup_s = time.perf_counter() - t0
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        dyn.run(steps)
        samples.append((time.perf_counter() - t) / steps * 1000.0)
    return {"ms_per_step": statistics.median(samples), "samples_ms_per_step": samples, "steps": steps,
            "repeats": len(samples), "warmup_s": warmup_s}
