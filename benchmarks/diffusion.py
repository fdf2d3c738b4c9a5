"""A diffusion coefficient from MD, student against teacher, by validate's MD protocol (not a test).

    python benchmarks/diffusion.py teacher --system licoo2 --vacancy Li --temperature 2000 --ps 3 --out DIR
    python benchmarks/diffusion.py student MODEL.pt --out DIR [--seeds 8] [--ps 40]

Why a script beside `mlffd validate --properties md`: an ion hops on a picosecond scale only where
there is a site to hop into, and the teacher's MD of validate's 192-atom cell costs ~2.4 s a step
on these 2 cores (LiCoO2, SevenNet-0); here the built-in cell (48 atoms for LiCoO2) with one ion
taken out, so that picoseconds of teacher MD fit in an hour.

Each model starts from its own crystal: cell and ions relaxed, the ion of `--vacancy` nearest the
origin removed, the ions relaxed again in that cell. Then `mlffd.validate`'s protocol
(`dynamics.run_protocol`: velocities at 2T, 0.5 ps Langevin equilibration, Langevin production with
a weak friction, positions every 5 steps, the same seed on both sides) and its MSD (all time
origins, D = slope / 6 over the second half of the lags up to half the run).

`teacher` runs once (DIR/teacher.json: settings, timings, MSD and D per element). `student` runs
the teacher's protocol (its seed and length), the same length with `--seeds` other seeds, and one
`--ps` run: a few ion hops decide a run this short, so the teacher's single D is read against the
spread of the student's D over runs of the same length (and each run's two halves). Writes
DIR/diffusion.json, DIR/diffusion.md and DIR/msd.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from mlffd.data.systems import load_system
from mlffd.relax import relax
from mlffd.validate.properties import dynamics
from mlffd.validate.properties.crystal import default_min_distance
from mlffd.validate.properties.suite import protocol_timestep

EQUILIBRATION_PS = 0.5
RELAX_FMAX = 0.01  # eV/A
HOP_A = 2.0  # an ion this far from where it last sat has hopped (LiCoO2's Li-Li distance: 2.82 A)
MSD_POINTS = 200  # MSD curves are kept thinned to about this many lags (the fit uses them all)


def start_structure(system: str, vacancy: str | None, calc) -> tuple:
    """The model's own crystal with one `vacancy` ion removed, relaxed; and what relaxing cost."""
    crystal = load_system(system).images[0]
    t0 = time.perf_counter()
    bulk = relax(crystal, calc, fmax=RELAX_FMAX, cell="full")
    atoms = bulk.atoms
    if vacancy:
        candidates = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == vacancy]
        if not candidates:
            raise SystemExit(f"no {vacancy} in {system}")
        del atoms[min(candidates, key=lambda i: np.linalg.norm(atoms.positions[i]))]
        atoms = relax(atoms, calc, fmax=RELAX_FMAX).atoms
    return atoms, {"relax_s": round(time.perf_counter() - t0, 1), "bulk_converged": bulk.converged,
                   "volume_A3_per_atom": bulk.atoms.get_volume() / len(bulk.atoms)}


def make_protocol(atoms, temperature: float, production_ps: float, seed: int) -> dynamics.Protocol:
    """validate's protocol; a collapsed pair stops the run."""
    dt = protocol_timestep(atoms, temperature)
    return dynamics.Protocol(temperature=temperature, timestep_fs=dt,
                             equilibration_steps=int(round(1000.0 * EQUILIBRATION_PS / dt)),
                             production_steps=int(round(1000.0 * production_ps / dt)), seed=seed,
                             min_distance=default_min_distance(atoms.get_chemical_symbols()))


def diffusion(positions, numbers, protocol: dynamics.Protocol) -> dict:
    """D per element over the whole production and over each half (the run's own noise); the MSD
    curve thinned to about MSD_POINTS lags, its last lag kept."""
    sample_fs = protocol.sample_every * protocol.timestep_fs
    half = len(positions) // 2
    whole = dynamics.mean_squared_displacement(positions, numbers, sample_fs)
    halves = [dynamics.mean_squared_displacement(p, numbers, sample_fs) for p in (positions[:half], positions[half:])]
    lags = whole.get("lag_ps", [])
    keep = sorted(set(range(0, len(lags), max(1, len(lags) // MSD_POINTS))) | {len(lags) - 1}) if lags else []
    out = {"lag_ps": [lags[k] for k in keep], "per_element": {}}
    for element, m in whole.get("per_element", {}).items():
        out["per_element"][element] = {"D_A2_per_ps": m["D_A2_per_ps"],
                                       "msd_A2": [round(m["msd_A2"][k], 5) for k in keep],
                                       "diffusive": m["diffusive"],
                                       "D_halves": [h.get("per_element", {}).get(element, {}).get("D_A2_per_ps") for h in halves]}
    return out


def hops(positions, numbers) -> dict:
    """Per element: how many times an ion moved more than HOP_A from where it last sat."""
    if not len(positions):  # stopped before production
        return {chemical_symbols[z]: 0 for z in sorted(set(numbers))}
    x = np.asarray(positions)
    out = {}
    for z in sorted(set(numbers)):
        count = 0
        for track in np.moveaxis(x[:, numbers == z], 1, 0):  # [frame, 3] per ion
            site = track[0]
            for p in track:
                if np.linalg.norm(p - site) > HOP_A:
                    count, site = count + 1, p
        out[chemical_symbols[z]] = count
    return out


def run_md(label: str, calc, start, prep: dict, temperature: float, production_ps: float, seed: int) -> dict:
    """One protocol run from `start`: what it cost, its temperature, D per element."""
    protocol = make_protocol(start, temperature, production_ps, seed)
    traj = dynamics.run_protocol(start, calc, protocol, label=label, progress=True)
    if traj.stopped:
        print(f"{label}: MD stopped early: {traj.stopped}")
    temps = [t for t, p in zip(traj.temperature, traj.phase) if p == "production"]
    stopped = traj.stopped
    limit = dynamics.RUNAWAY_FACTOR * temperature  # validate's runaway (the start at 2T is not one)
    hot = next((k for k, t in enumerate(temps) if t > limit), None)
    if stopped is None and hot is not None:
        stopped = (f"ran away: {temps[hot]:.0f} K > {limit:.0f} K after "
                   f"{(hot + 1) * protocol.timestep_fs / 1000.0:.2f} ps of production")
        print(f"{label}: {stopped}")
    positions = list(traj.positions)
    return {**prep, "n_atoms": len(start), "formula": start.get_chemical_formula(), "seed": seed,
            "steps_done": traj.steps_done, "stopped": stopped, "md_wall_s": round(traj.wall_s, 1),
            "planned_ps": production_ps,
            "production_ps": len(positions) * protocol.sample_every * protocol.timestep_fs / 1000.0,
            "mean_temperature_K": float(np.mean(temps)) if temps else None,
            "hops": hops(positions, start.numbers), "diffusion": diffusion(positions, start.numbers, protocol)}


def cmd_teacher(args) -> None:
    from mlffd.teachers.registry import load_teacher

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calc = load_teacher(args.teacher)
    start, prep = start_structure(args.system, args.vacancy, calc)
    run = run_md("teacher", calc, start, prep, args.temperature, args.ps, args.seed)
    settings = {"teacher": args.teacher, "system": args.system, "vacancy": args.vacancy,
                "temperature_K": args.temperature, "seed": args.seed}
    (out / "teacher.json").write_text(json.dumps({"settings": settings, **run}))
    d = run["diffusion"]["per_element"]
    print(json.dumps({e: (m["D_A2_per_ps"], m["D_halves"]) for e, m in d.items()}))


def cmd_student(args) -> None:
    """The teacher's protocol (its seed and length), the same length with `--seeds` other seeds
    (where a run this short puts D), and one `--ps` run."""
    from mlffd.calculator import MLFFDCalculator

    out = Path(args.out)
    ref = json.loads((out / "teacher.json").read_text())
    s = ref["settings"]
    calc = MLFFDCalculator(args.model)
    start, prep = start_structure(s["system"], s["vacancy"], calc)
    t_ps, temperature = ref["production_ps"], s["temperature_K"]
    runs = {"teacher": ref, "student": run_md("student", calc, start, prep, temperature, t_ps, s["seed"])}
    for k in range(1, args.seeds + 1):
        runs[f"student seed {s['seed'] + k}"] = run_md(f"student seed {s['seed'] + k}", calc, start, prep,
                                                       temperature, t_ps, s["seed"] + k)
    if args.ps and args.ps > t_ps:
        runs[f"student {args.ps:g} ps"] = run_md("student long", calc, start, prep, temperature, args.ps,
                                                 s["seed"])
    protocol = make_protocol(start, temperature, t_ps, s["seed"]).__dict__
    report = {"settings": s, "model": str(args.model), "protocol": protocol, "runs": runs,
              "same_length": same_length(runs, t_ps, s["vacancy"])}
    (out / "diffusion.json").write_text(json.dumps(report))
    (out / "diffusion.md").write_text(markdown(report))
    plot(report, out / "msd.png")
    print((out / "diffusion.md").read_text())


def same_length(runs: dict, production_ps: float, mobile: str) -> dict:
    """Per element: the student's D over its completed runs of the teacher's length, how many lie
    below the teacher's (near half when they agree), and in how many the other elements hopped too
    (the host lattice gave way)."""
    teacher = runs["teacher"]["diffusion"]["per_element"]
    same = [r for name, r in runs.items() if name.startswith("student") and abs(r["planned_ps"] - production_ps) < 1e-6]
    students = [r for r in same if not r["stopped"]]
    stopped = len(same) - len(students)
    lattice_hopped = sum(1 for r in students if any(n for e, n in r["hops"].items() if e != mobile))
    out = {"completed": len(students), "stopped": stopped, "host_hopped": lattice_hopped, "per_element": {}}
    for element, t in teacher.items():
        ds = sorted(r["diffusion"]["per_element"][element]["D_A2_per_ps"] for r in students)
        if ds:
            out["per_element"][element] = {"teacher": t["D_A2_per_ps"], "student_runs": ds,
                                           "student_median": float(np.median(ds)),
                                           "student_runs_below_teacher": sum(d < t["D_A2_per_ps"] for d in ds)}
    return out


def markdown(report: dict) -> str:
    s, p, mobile = report["settings"], report["protocol"], report["settings"]["vacancy"]
    elements = list(report["runs"]["teacher"]["hops"])
    lines = [f"# Diffusion: {s['system']}, one {mobile} vacancy, {s['temperature_K']:g} K",
             "",
             f"Protocol: {p['timestep_fs']:g} fs, {p['equilibration_steps']} steps of Langevin equilibration, "
             f"production with a weak friction, positions every {p['sample_every']} steps; a production hotter "
             f"than {dynamics.RUNAWAY_FACTOR:g}x the target is a runaway (validate's rule), and a runaway's D does "
             "not count. D = MSD slope / 6 over the second half of the lags "
             "(up to half the run); halves: D over each half of the run. Hops: an ion more than "
             f"{HOP_A:g} A from where it last sat.",
             "",
             f"| run | seed | production ps | mean T (K) | stopped | hops ({', '.join(elements)}) | D({mobile}) (A^2/ps) "
             f"| halves | MSD({mobile}) at the longest lag (A^2) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        m = r["diffusion"].get("per_element", {}).get(mobile)
        d = "- | - | -" if m is None else f"{m['D_A2_per_ps']:.4f} | {' / '.join(_fmt(h) for h in m['D_halves'])} | {m['msd_A2'][-1]:.2f}"
        temperature = "-" if r["mean_temperature_K"] is None else f"{r['mean_temperature_K']:.0f}"  # stopped before production
        lines.append(f"| {name} | {r['seed']} | {r['production_ps']:.2f} | {temperature} | "
                     f"{r['stopped'] or 'no'} | {', '.join(str(r['hops'][e]) for e in elements)} | {d} |")
    same = report["same_length"]
    lines += ["", f"The student's runs of the teacher's length: {same['completed']} completed, {same['stopped']} "
              f"stopped; in {same['host_hopped']} of the completed ones ions other than {mobile} hopped.", "",
              "| element | teacher D | student median | student min - max | student runs below the teacher |",
              "|---|---|---|---|---|"]
    for element, m in same["per_element"].items():
        ds = m["student_runs"]
        lines.append(f"| {element} | {m['teacher']:.4f} | {m['student_median']:.4f} | {ds[0]:.4f} - {ds[-1]:.4f} | "
                     f"{m['student_runs_below_teacher']} of {len(ds)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def plot(report: dict, path: Path) -> None:
    """MSD of the vacancy's element against lag: the teacher, the student's runs of its length (thin),
    the long student run; runs that stopped or ran away are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    element = report["settings"]["vacancy"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in report["runs"].items():
        d = r["diffusion"]
        if r["stopped"] or element not in d.get("per_element", {}):
            continue
        style = ({"color": "k", "lw": 2} if name == "teacher" else
                 {"color": "C0", "lw": 0.7, "alpha": 0.6} if " seed " in name or name == "student" else
                 {"color": "C1", "lw": 1.5})
        ax.plot(d["lag_ps"], d["per_element"][element]["msd_A2"], label=None if " seed " in name else name, **style)
    ax.set_xlabel("lag (ps)")
    ax.set_ylabel(f"MSD of {element} (A$^2$)")
    ax.set_title(f"{report['settings']['system']}, {report['settings']['temperature_K']:g} K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("teacher")
    t.add_argument("--teacher", default="sevennet-0")
    t.add_argument("--system", default="licoo2")
    t.add_argument("--vacancy", default="Li", help="element of the ion removed (empty: none)")
    t.add_argument("--temperature", type=float, default=2000.0)
    t.add_argument("--ps", type=float, default=3.0, help="production length")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    s = sub.add_parser("student")
    s.add_argument("model")
    s.add_argument("--seeds", type=int, default=8, help="student runs of the teacher's length with other seeds")
    s.add_argument("--ps", type=float, help="also a longer student run of this many ps")
    s.add_argument("--out", required=True, help="the teacher's DIR")
    args = ap.parse_args()
    {"teacher": cmd_teacher, "student": cmd_student}[args.cmd](args)


if __name__ == "__main__":
    main()
