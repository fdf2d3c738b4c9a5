"""What every bench engine is handed (`BenchPlan`) and the one shape of a timing row (`row`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchStructure:
    atoms: object  # ase.Atoms
    path: Path  # the same structure as extxyz, for engines that run in their own process
    replicas: tuple


@dataclass
class BenchPlan:
    model_path: str  # absolute
    elements: list  # the model's, in its type order
    teacher: str | None
    peers: tuple
    structures: dict  # requested size -> BenchStructure, sizes ascending
    steps: int
    repeats: int
    warmup: int
    threads: int
    timestep_fs: float
    temperature_k: float
    seed: int
    teacher_steps: int
    teacher_max_atoms: int
    long_steps_lammps: int  # leak check on the smallest size only
    long_steps_ase: int
    timeout: float
    work: Path  # scratch, removed after the bench
    out_dir: Path

    @property
    def smallest(self) -> int:
        return min(self.structures)

    def common_spec(self) -> dict:
        """The MD settings every ASE worker spec carries (mlffd.bench.worker)."""
        return {"steps": self.steps, "repeats": self.repeats, "warmup": self.warmup, "threads": self.threads,
                "timestep": self.timestep_fs, "temperature": self.temperature_k, "seed": self.seed}


TIMING_KEYS = ("samples_ms_per_step", "steps", "repeats", "long_steps", "long_ms_per_step",
               "rss_start_mb", "rss_end_mb", "rss_growth_mb", "rss_growth_kind")


def row(engine: str, model: str, natoms: int, ms=None, rss=None, **extra) -> dict:
    """One bench.json row; `skipped=` or `error=` in `extra` when there is no number."""
    out = {
        "engine": engine,
        "model": model,
        "natoms": int(natoms),
        "ms_per_step": None if ms is None else float(ms),
        "us_per_atom_step": None if ms is None else float(ms) * 1000.0 / natoms,
        "peak_rss_mb": None if rss is None else float(rss),
    }
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def row_from_result(engine: str, model: str, natoms: int, result: dict, **extra) -> dict:
    """The row of one timing run's result (`{"error": ...}` or ms per step, RSS, leak check)."""
    if "error" in result:
        return row(engine, model, natoms, error=result["error"], **extra)
    keep = {k: result[k] for k in TIMING_KEYS if k in result}
    if result.get("finite") is False:
        keep["warning"] = "energy not finite at the end of the run"
    return row(engine, model, natoms, result["ms_per_step"], result.get("peak_rss_mb"), **keep, **extra)


def last_line(text: str) -> str:
    """The last line of a process's output: where its error usually is."""
    text = (text or "").strip()
    return text.splitlines()[-1] if text else ""
