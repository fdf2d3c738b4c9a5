"""`mlffd bench`: time per MD step of the student, the teacher and the classical floor, side by side.

    result = bench("model.pt", "sevennet-0", [64, 512, 4096], ["ase", "lammps"], "bench/")

Every row is a real MD run (ASE velocity Verlet; LAMMPS `fix nve` + `run N`) in its own process,
so peak RSS belongs to one engine, one model and one size; each engine is a module of
`mlffd.bench.engines`, handed the same `BenchPlan` (mlffd.bench.plan). The warm-up steps are excluded and the
reported time is the median over repeats. Writes `bench.json` (`{"rows": [...],
"speedup_vs_teacher": {...}}`), `bench.md`, `bench.png`, `bench_meta.json` and the LAMMPS logs.
See docs/benchmarks.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import ase.io
import numpy as np
import torch

from mlffd.bench.engines import ENGINES
from mlffd.bench.plan import BenchPlan, BenchStructure
from mlffd.data.systems import BUILTIN_SYSTEMS, builtin_for_elements, load_one_structure, load_system
from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata
from mlffd.reference import check_reference_name, reference_elements

DEFAULTS = {
    "steps": 20,
    "repeats": 3,
    "warmup": 5,
    "teacher_steps": 3,
    "teacher_max_atoms": 512,
    "long_steps": 5000,  # LAMMPS
    "long_steps_ase": 500,
    "threads": 1,
    "timeout": 3600,
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- structures


def unit_cell(elements, system: str | None = None):
    """The cell replicated for every size: `system` (built-in name or file) or the built-in that
    matches the model's elements."""
    if system:
        spec = system.split(":")[0]
        atoms = load_one_structure(f"{spec}:1x1x1" if spec in BUILTIN_SYSTEMS else system, "bench").images[0]
    else:
        builtin = builtin_for_elements(elements)
        if builtin is None:
            raise MLFFDError(
                f"no built-in bench system for elements {' '.join(elements)}; pass --system (a built-in "
                f"name or a structure file with a periodic cell)"
            )
        atoms = load_system(f"{builtin}:1x1x1").images[0]
    if not np.all(atoms.pbc):
        raise MLFFDError("bench systems must be periodic in all three directions")
    bad = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if bad:
        raise MLFFDError(f"bench system has element(s) {', '.join(bad)} not in the model ({' '.join(elements)})")
    return atoms


MAX_ASPECT = 2.0  # longest over shortest side of a bench supercell


def replicate(unit, natoms: int):
    """`unit` repeated na x nb x nc times with na*nb*nc*len(unit) closest to `natoms` among the shapes
    no side of which is more than MAX_ASPECT times another (then the most cubic); a size only a slab
    or a rod would hit exactly (7 quartz cells: 1x7x1) takes the nearest count a compact shape has."""
    n_cell = len(unit)
    target = max(1, round(natoms / n_cell))
    lengths = unit.cell.lengths()
    best = None
    for a in range(1, 2 * target + 1):
        for b in range(1, 2 * target // a + 1):
            for c in range(1, 2 * target // (a * b) + 1):
                dims = lengths * np.array([a, b, c])
                aspect = float(dims.max() / dims.min())
                key = (aspect > MAX_ASPECT, abs(a * b * c - target), aspect)
                if best is None or key < best[0]:
                    best = (key, (a, b, c))
    atoms = unit.repeat(best[1])
    return atoms, best[1]


# ------------------------------------------------------------------------------- main


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    sizes = list(sizes)
    if not sizes or not all(isinstance(n, int) and n >= 1 for n in sizes):
        raise MLFFDError(f"bench sizes must be one or more positive numbers of atoms, got {sorted(sizes, key=str)}")
    return sorted(set(sizes))


def _check_engines(engines: Sequence[str]) -> list[str]:
    engines = list(dict.fromkeys(engines))
    bad = [e for e in engines if e not in ENGINES]
    if bad or not engines:
        raise MLFFDError(f"unknown engine(s) {', '.join(map(str, bad)) or '(none)'}; choose from {', '.join(ENGINES)}")
    return engines


def bench(model_path: str | Path, teacher: str | None, sizes: Sequence[int], engines: Sequence[str] = tuple(ENGINES),
          out_dir: str | Path = "bench", *,
          steps: int = DEFAULTS["steps"], repeats: int = DEFAULTS["repeats"], warmup: int = DEFAULTS["warmup"],
          teacher_steps: int = DEFAULTS["teacher_steps"], teacher_max_atoms: int = DEFAULTS["teacher_max_atoms"],
          long_steps: int | None = DEFAULTS["long_steps"], long_steps_ase: int | None = DEFAULTS["long_steps_ase"],
          threads: int = DEFAULTS["threads"], timestep: float = 1.0, temperature: float = 300.0,
          seed: int = 0, system: str | None = None, peers=("mace",), timeout: float = DEFAULTS["timeout"],
          verbose: bool = True) -> dict:
    """Benchmark a frozen student against `teacher` (None: no teacher rows) and the classical
    floor; returns the bench.json content. See the module docstring."""
    log = _log if verbose else (lambda _m: None)
    meta = read_metadata(model_path)
    model_path = str(Path(model_path).resolve())
    sizes = _check_sizes(sizes)
    engines = _check_engines(engines)
    for name, value in (("steps", steps), ("repeats", repeats), ("teacher_steps", teacher_steps), ("threads", threads)):
        if int(value) < 1:
            raise MLFFDError(f"bench {name} must be >= 1, got {value}")
    if int(warmup) < 0:
        raise MLFFDError(f"bench warmup must be >= 0, got {warmup}")
    elements = list(meta["elements"])
    if teacher:
        check_reference_name(teacher)
        covered = reference_elements(teacher)
        if covered is not None and not set(elements) <= covered:
            raise MLFFDError(f"teacher {teacher} does not cover element(s) "
                             f"{', '.join(sorted(set(elements) - covered))}")
    unit = unit_cell(elements, system)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MLFFDError(f"output path {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlffd_bench_"))
    try:
        structures = {}
        for n in sizes:
            atoms, reps = replicate(unit, n)
            path = work / f"structure_{n}.extxyz"
            ase.io.write(path, atoms, format="extxyz")
            structures[n] = BenchStructure(atoms, path, reps)
        plan = BenchPlan(
            model_path=model_path, elements=elements, teacher=teacher, peers=tuple(peers or ()),
            structures=structures, steps=int(steps), repeats=int(repeats), warmup=int(warmup), threads=int(threads),
            timestep_fs=float(timestep), temperature_k=float(temperature), seed=int(seed),
            teacher_steps=int(teacher_steps), teacher_max_atoms=int(teacher_max_atoms),
            long_steps_lammps=int(long_steps or 0), long_steps_ase=int(long_steps_ase or 0),
            timeout=float(timeout), work=work, out_dir=out_dir)
        rows: list[dict] = []
        for engine in (name for name in ENGINES if name in engines):  # registration order
            for row in ENGINES[engine](plan):
                rows.append(row)
                log(_row_line(row))

        speedup = speedup_vs_teacher(rows, teacher)
        result = {"rows": rows, "speedup_vs_teacher": speedup}
        meta_out = {
            "model": model_path, "model_elements": elements, "teacher": teacher, "sizes_requested": sizes,
            "sizes": {str(len(v.atoms)): list(v.replicas) for v in structures.values()}, "engines": engines,
            "system": system or f"built-in {builtin_for_elements(elements)}",
            "threads": int(threads), "steps": int(steps), "repeats": int(repeats), "warmup": int(warmup),
            "teacher_steps": int(teacher_steps), "teacher_max_atoms": int(teacher_max_atoms),
            "long_steps_lammps": int(long_steps or 0), "long_steps_ase": int(long_steps_ase or 0),
            "timestep_fs": float(timestep), "temperature_k": float(temperature), "seed": int(seed),
            "host": _host_info(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "speedup_definition": "teacher ms/step divided by student ms/step, both in ASE, same size and threads",
        }
        (out_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / "bench_meta.json").write_text(json.dumps(meta_out, indent=2) + "\n")
        (out_dir / "bench.md").write_text(bench_markdown(result, meta_out))
        bench_plot(result, out_dir / "bench.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"bench: wrote {out_dir / 'bench.json'}")
    return result


def _row_line(row: dict) -> str:
    """One row as the progress log prints it."""
    head = f"bench: {row['engine']:6s} {row['model']:24s} {row['natoms']:6d} atoms  "
    if row.get("ms_per_step") is None:
        return head + ("skipped: " + row["skipped"] if "skipped" in row else "error: " + row.get("error", "?"))
    rss = "?" if row["peak_rss_mb"] is None else format(row["peak_rss_mb"], ".0f")
    return head + f"{row['ms_per_step']:10.3f} ms/step  {row['us_per_atom_step']:9.2f} us/atom/step  {rss} MB"


def speedup_vs_teacher(rows: list[dict], teacher: str | None) -> dict:
    if not teacher:
        return {}
    student = {r["natoms"]: r["ms_per_step"] for r in rows
               if r["engine"] == "ase" and r["model"] == "student" and r["ms_per_step"]}
    ref = {r["natoms"]: r["ms_per_step"] for r in rows
           if r["engine"] == "ase" and r["model"] == f"teacher:{teacher}" and r["ms_per_step"]}
    return {str(n): ref[n] / student[n] for n in sorted(set(student) & set(ref))}


def _host_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        info["load_average_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    info["torch"] = torch.__version__
    return info


# ------------------------------------------------------------------------------- output


def bench_markdown(result: dict, meta: dict) -> str:
    rows = result["rows"]
    teacher_ms = {r["natoms"]: r["ms_per_step"] for r in rows
                  if r["model"].startswith("teacher:") and r["ms_per_step"]}
    host = meta.get("host", {})
    lines = [
        "# mlffd benchmark",
        "",
        f"- model: `{meta['model']}` ({' '.join(meta['model_elements'])}); teacher: {meta['teacher'] or 'none'}",
        f"- system: {meta['system']}; sizes (atoms: replicas) "
        + ", ".join(f"{k}: {'x'.join(map(str, v))}" for k, v in meta["sizes"].items()),
        f"- MD: velocity Verlet / fix nve, dt {meta['timestep_fs']} fs, start {meta['temperature_k']} K; "
        f"{meta['steps']} steps x {meta['repeats']} repeats after {meta['warmup']} warm-up steps "
        f"(teacher: {meta['teacher_steps']} steps x {meta['repeats']}); median reported",
        f"- threads per engine: {meta['threads']} (LAMMPS: 1 MPI rank); host: {host.get('cpu', '?')}, "
        f"{host.get('cores', '?')} cores, load average at end {host.get('load_average_at_end', '?')}",
        f"- created {meta['created']}",
        "",
        "| engine | model | atoms | ms/step | us/atom/step | peak RSS (MB) | teacher / this | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = ""
        if r["ms_per_step"] and r["natoms"] in teacher_ms:
            ratio = f"{teacher_ms[r['natoms']] / r['ms_per_step']:.1f}x"
        note = r.get("skipped") and f"skipped: {r['skipped']}" or r.get("error") and f"error: {r['error']}" or ""
        if r.get("rss_growth_mb") is not None:
            note = (note + "; " if note else "") + (
                f"RSS growth {r['rss_growth_mb']:+.1f} MB over {r['long_steps']} steps")
        if r.get("warning"):
            note = (note + "; " if note else "") + r["warning"]
        ms = f"{r['ms_per_step']:.3f}" if r["ms_per_step"] is not None else "-"
        us = f"{r['us_per_atom_step']:.2f}" if r["us_per_atom_step"] is not None else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] is not None else "-"
        lines.append(f"| {r['engine']} | {r['model']} | {r['natoms']} | {ms} | {us} | {rss} | {ratio} | {note} |")
    lines.append("")
    if result["speedup_vs_teacher"]:
        lines.append("Speed-up of the student over the teacher (both in ASE, same size): "
                     + ", ".join(f"{k} atoms {v:.1f}x" for k, v in result["speedup_vs_teacher"].items()))
        lines.append("")
    return "\n".join(lines)


def bench_plot(result: dict, path) -> None:
    import matplotlib  # plots only: matplotlib is not imported at CLI start

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list] = {}
    for r in result["rows"]:
        if r["us_per_atom_step"]:
            series.setdefault(f"{r['model']} ({r['engine']})", []).append((r["natoms"], r["us_per_atom_step"]))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for label, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("cost per atom per MD step (µs)")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
