"""ASE: velocity Verlet on the student's `MLFFDCalculator`, the teacher's calculator and peers',
each run in its own process (mlffd.bench.worker) so that peak RSS belongs to one of them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator

from mlffd.bench.plan import BenchPlan, last_line, row, row_from_result
from mlffd.bench.worker import MARKER

TEACHER_COST_NOTE = "SevenNet-0 costs about 10 ms per atom per step on CPU"


def run_ase_md(spec: dict, threads: int, timeout: float) -> dict:
    """One ASE timing run (`mlffd.bench.worker` spec) in its own process; its result or {"error": ...}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mlffd.bench.worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    return {"error": f"worker failed (rc {proc.returncode}): {last_line(proc.stderr)}"}


def peer_unavailable(peer: str) -> str | None:
    """Why a peer calculator cannot run here, or None."""
    if peer == "mace":
        if importlib.util.find_spec("mace") is None:
            return "mace-torch not installed (it pins e3nn 0.4.4, so it needs its own environment)"
        if not os.environ.get("MLFFD_MACE_MODEL"):
            return "mace-torch installed but no model file (set MLFFD_MACE_MODEL=PATH)"
        return None
    return f"unknown peer {peer!r}"


def rows(plan: BenchPlan) -> Iterator[dict]:
    """The student at every size, then the teacher and each peer up to `teacher_max_atoms`."""
    common = plan.common_spec()
    for size, structure in plan.structures.items():
        n = len(structure.atoms)
        long_steps = plan.long_steps_ase if size == plan.smallest else 0
        spec = dict(common, kind="student", model=plan.model_path, structure=str(structure.path), long_steps=long_steps)
        yield row_from_result("ase", "student", n, run_ase_md(spec, plan.threads, plan.timeout))
    if plan.teacher:
        yield from _reference_rows(plan, f"teacher:{plan.teacher}", plan.teacher, f" ({TEACHER_COST_NOTE})",
                                   warmup=min(plan.warmup, 1))
    for peer in plan.peers:
        reason = peer_unavailable(peer)
        if reason:
            for structure in plan.structures.values():
                yield row("ase", f"peer:{peer}", len(structure.atoms), skipped=reason)
            continue
        yield from _reference_rows(plan, f"peer:{peer}", peer, "", warmup=plan.warmup)


def _reference_rows(plan: BenchPlan, label: str, name: str, why_skipped: str, warmup: int) -> Iterator[dict]:
    """A teacher or peer calculator (mlffd.reference) at every size it is cheap enough for."""
    for structure in plan.structures.values():
        n = len(structure.atoms)
        if n > plan.teacher_max_atoms:
            yield row("ase", label, n, skipped=f"{n} atoms > --teacher-max-atoms {plan.teacher_max_atoms}{why_skipped}")
            continue
        spec = dict(plan.common_spec(), kind="teacher", model=name, structure=str(structure.path),
                    steps=plan.teacher_steps, warmup=warmup, long_steps=0)
        yield row_from_result("ase", label, n, run_ase_md(spec, plan.threads, plan.timeout))
