"""One ASE timing run in its own process (so peak RSS belongs to one engine and one size).

    python -m mlffd.bench.worker '{"kind": "student", "model": "model.pt", ...}'

Prints one line `MLFFD_BENCH_RESULT {json}` on stdout. Called by `mlffd.bench.benchmark`.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from mlffd.bench.timing import time_steps

MARKER = "MLFFD_BENCH_RESULT"


def current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb() -> float:
    """VmHWM: the peak RSS of this process image. (ru_maxrss would include the RSS of the parent
    that spawned us: Linux keeps it across vfork+exec.)"""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def make_calculator(spec: dict):
    threads = int(spec.get("threads") or 1)
    import torch

    torch.set_num_threads(threads)
    if spec["kind"] == "student":
        from mlffd.calculator import MLFFDCalculator

        return MLFFDCalculator(spec["model"], threads=threads)
    from mlffd.reference import load_reference

    calc, _ = load_reference(spec["model"], threads=threads)
    return calc


def run(spec: dict) -> dict:
    import ase.io
    import numpy as np
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from mlffd.md import initial_velocities

    atoms = ase.io.read(spec["structure"])
    rss_before_model = current_rss_mb()
    calc = make_calculator(spec)
    atoms.calc = calc
    initial_velocities(atoms, float(spec.get("temperature", 300.0)), int(spec.get("seed", 0)))
    dyn = VelocityVerlet(atoms, float(spec.get("timestep", 1.0)) * units.fs)
    out = time_steps(dyn, int(spec["steps"]), int(spec.get("repeats", 3)), int(spec.get("warmup", 3)))
    out["rss_before_model_mb"] = rss_before_model
    long_steps = int(spec.get("long_steps") or 0)
    if long_steps:
        rss0 = current_rss_mb()
        t = time.perf_counter()
        dyn.run(long_steps)
        out["long_ms_per_step"] = (time.perf_counter() - t) / long_steps * 1000.0
        rss1 = current_rss_mb()
        out.update(long_steps=long_steps, rss_start_mb=rss0, rss_end_mb=rss1, rss_growth_mb=rss1 - rss0)
    epot = atoms.get_potential_energy()
    out["finite"] = bool(np.isfinite(epot) and np.isfinite(atoms.get_kinetic_energy()))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    try:
        result = run(spec)
    except Exception as exc:  # reported, not faked: the parent records the error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result = {"error": f"{type(exc).__name__}: {first}"}
    print(MARKER + " " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
