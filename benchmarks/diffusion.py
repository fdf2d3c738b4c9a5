"""A diffusion coefficient from MD, student against teacher, by validate's MD protocol (not a test).

    python benchmarks/diffusion.py teacher --system licoo2 --vacancy Li --temperature 2000 --ps 3 --out DIR
    python benchmarks/diffusion.py student MODEL.pt --out DIR [--ps 30]

Why a script beside `mlffd validate --properties md`: an ion hops on a picosecond scale only where
there is a site to hop into, and the teacher's MD of validate's 192-atom cell costs ~2.4 s a step
on these 2 cores (LiCoO2, SevenNet-0); here the built-in cell (48 atoms for LiCoO2) with one ion
taken out, so that picoseconds of teacher MD fit in an hour.

Each model starts from its own crystal: cell and ions relaxed, the ion of `--vacancy` nearest the
origin removed, the ions relaxed again in that cell. Then `mlffd.validate`'s protocol
(`dynamics.run_protocol`: velocities at 2T, 0.5 ps Langevin equilibration, Langevin production with
a weak friction, positions every 5 steps, the same seed on both sides) and its MSD (all time
origins, D = slope / 6 over the second half of the lags up to half the run).

`teacher` runs once and keeps what the student needs in DIR/teacher.npz (the protocol, the
production positions, float32) with DIR/teacher.json; `student` runs the same protocol over the
teacher's production length and, with `--ps`, over a longer one (the student is cheap: its own
noise). The noise floor of a run is the spread of D between its two halves. Writes
DIR/diffusion.json, DIR/diffusion.md and DIR/msd.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mlffd.data.systems import load_system
from mlffd.relax import relax
from mlffd.validate.properties import dynamics
from mlffd.validate.properties.crystal import default_min_distance
from mlffd.validate.properties.suite import protocol_timestep

EQUILIBRATION_PS = 0.5
RELAX_FMAX = 0.01  # eV/A


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
    dt = protocol_timestep(atoms, temperature)
    return dynamics.Protocol(temperature=temperature, timestep_fs=dt,
                             equilibration_steps=int(round(1000.0 * EQUILIBRATION_PS / dt)),
                             production_steps=int(round(1000.0 * production_ps / dt)), seed=seed,
                             min_distance=default_min_distance(atoms.get_chemical_symbols()))


def diffusion(positions, numbers, protocol: dynamics.Protocol) -> dict:
    """D per element over the whole production and over each half (the run's own noise)."""
    sample_fs = protocol.sample_every * protocol.timestep_fs
    half = len(positions) // 2
    whole = dynamics.mean_squared_displacement(positions, numbers, sample_fs)
    halves = [dynamics.mean_squared_displacement(p, numbers, sample_fs) for p in (positions[:half], positions[half:])]
    out = {"lag_ps": whole.get("lag_ps", []), "per_element": {}}
    for element, m in whole.get("per_element", {}).items():
        out["per_element"][element] = {"D_A2_per_ps": m["D_A2_per_ps"], "msd_A2": m["msd_A2"],
                                       "diffusive": m["diffusive"],
                                       "D_halves": [h.get("per_element", {}).get(element, {}).get("D_A2_per_ps") for h in halves]}
    return out


def run_side(label: str, calc, args, production_ps: float) -> dict:
    atoms, prep = start_structure(args.system, args.vacancy, calc)
    protocol = make_protocol(atoms, args.temperature, production_ps, args.seed)
    traj = dynamics.run_protocol(atoms, calc, protocol, label=label, progress=True)
    if traj.stopped:
        print(f"{label}: MD stopped early: {traj.stopped}")
    temps = [t for t, p in zip(traj.temperature, traj.phase) if p == "production"]
    return {"atoms": atoms, "protocol": protocol, "positions": np.asarray(traj.positions, dtype=np.float32),
            "summary": {**prep, "n_atoms": len(atoms), "formula": atoms.get_chemical_formula(),
                        "steps_done": traj.steps_done, "stopped": traj.stopped, "md_wall_s": round(traj.wall_s, 1),
                        "production_ps": len(traj.positions) * protocol.sample_every * protocol.timestep_fs / 1000.0,
                        "mean_temperature_K": float(np.mean(temps)) if temps else None}}


def cmd_teacher(args) -> None:
    from mlffd.teachers.registry import load_teacher

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    side = run_side("teacher", load_teacher(args.teacher), args, args.ps)
    d = diffusion(list(side["positions"]), side["atoms"].numbers, side["protocol"])
    np.savez_compressed(out / "teacher.npz", positions=side["positions"], numbers=side["atoms"].numbers,
                        protocol=json.dumps(side["protocol"].__dict__))
    settings = {"teacher": args.teacher, "system": args.system, "vacancy": args.vacancy,
                "temperature_K": args.temperature, "seed": args.seed}
    (out / "teacher.json").write_text(json.dumps({"settings": settings, **side["summary"], "diffusion": d}, indent=1))
    print(json.dumps({e: (m["D_A2_per_ps"], m["D_halves"]) for e, m in d["per_element"].items()}))


def cmd_student(args) -> None:
    from mlffd.calculator import MLFFDCalculator

    out = Path(args.out)
    ref = json.loads((out / "teacher.json").read_text())
    saved = np.load(out / "teacher.npz")
    t_protocol = dynamics.Protocol(**json.loads(str(saved["protocol"])))
    t_positions = list(saved["positions"])
    for key, value in ref["settings"].items():
        if key != "teacher":
            setattr(args, key, value)
    t_ps = ref["production_ps"]
    calc = MLFFDCalculator(args.model)
    runs = {"teacher": {**ref, "diffusion": diffusion(t_positions, saved["numbers"], t_protocol)}}
    for name, ps in (("student", t_ps), ("student_long", args.ps)):
        if ps is None or (name == "student_long" and ps <= t_ps):
            continue
        side = run_side(name, calc, args, ps)
        runs[name] = {**side["summary"], "diffusion": diffusion(list(side["positions"]), side["atoms"].numbers,
                                                                side["protocol"])}
    report = {"settings": ref["settings"], "model": str(args.model), "protocol": t_protocol.__dict__, "runs": runs}
    (out / "diffusion.json").write_text(json.dumps(report, indent=1))
    (out / "diffusion.md").write_text(markdown(report))
    plot(report, out / "msd.png")
    print((out / "diffusion.md").read_text())


def markdown(report: dict) -> str:
    s, p = report["settings"], report["protocol"]
    lines = [f"# Diffusion: {s['system']}, one {s['vacancy']} vacancy, {s['temperature_K']:g} K",
             "",
             f"Protocol: {p['timestep_fs']:g} fs, {p['equilibration_steps']} steps of Langevin equilibration, "
             f"production with a weak friction, positions every {p['sample_every']} steps, seed {p['seed']}. "
             "D = MSD slope / 6 over the second half of the lags (up to half the run); in brackets D over "
             "each half of the run (the run's own noise).",
             "",
             "| run | atoms | production ps | mean T (K) | element | D (A^2/ps) | halves | MSD at the longest lag (A^2) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        for element, m in r["diffusion"]["per_element"].items():
            lines.append(f"| {name} | {r['formula']} | {r['production_ps']:.2f} | {r['mean_temperature_K']:.0f} | "
                         f"{element} | {m['D_A2_per_ps']:.4f} | {' / '.join(_fmt(h) for h in m['D_halves'])} | "
                         f"{m['msd_A2'][-1]:.2f} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, r), style in zip(report["runs"].items(), ("-", "--", ":")):
        d = r["diffusion"]
        for element, m in d["per_element"].items():
            ax.plot(d["lag_ps"], m["msd_A2"], style, label=f"{name} {element}")
    ax.set_xlabel("lag (ps)")
    ax.set_ylabel("MSD (A$^2$)")
    ax.legend(fontsize=7)
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
    s.add_argument("--ps", type=float, help="also a longer student run of this many ps")
    s.add_argument("--out", required=True, help="the teacher's DIR")
    args = ap.parse_args()
    {"teacher": cmd_teacher, "student": cmd_student}[args.cmd](args)


if __name__ == "__main__":
    main()
