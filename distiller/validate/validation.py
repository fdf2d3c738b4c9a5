"""`mlffd validate`: how close a frozen student is to its teacher, on held-out frames and in MD.

    report = validate("model.pt", "sevennet-0", "test.h5", "report/")

Writes `report.json`, `report.md`, `parity.png`, `energy_vs_time.png`, `rdf.png` (and the sampled
MD frames as `md_student.extxyz` / `md_teacher.extxyz`) into `report_dir`. See docs/validate.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from distiller.errors import MLFFDError

EV_PER_A3_TO_GPA = 160.21766208

UNITS = {
    "forces.mae": "eV/A (per Cartesian component)",
    "forces.rmse": "eV/A (per Cartesian component)",
    "forces.r2": "1 (coefficient of determination over all force components)",
    "forces.rel_mae": "1 (mean |F_student - F_teacher| / mean |F_teacher|, per-atom vector norms)",
    "forces.mean_abs_teacher": "eV/A (mean norm of the reference force per atom)",
    "forces.per_element": "same units as forces.*",
    "energy.mae_per_atom": "eV/atom",
    "energy.rmse_per_atom": "eV/atom",
    "stress.mae": "eV/A^3 (per Voigt component)",
    "stress.mae_gpa": "GPa",
    "nve.drift_ev_per_atom_per_ps": "eV/atom/ps (slope of a linear fit of total energy per atom vs time)",
    "nve.energy_std_ev_per_atom": "eV/atom",
    "nve.duration_ps": "ps",
    "rdf.max_abs_diff": "1 (g(r) is dimensionless)",
    "rdf.r_max": "A",
    "rdf.bin_width": "A",
    "md.temperature_k": "K",
    "md.timestep_fs": "fs",
    "md.min_distance": "A",
    "md.min_distance_floor": "A",
    "md.max_temperature_k": "K",
    "md.*_wall_s": "s",
}

DEFAULTS = {
    "md_steps": 200,  # student Langevin steps
    "nve_steps": None,  # student NVE steps (None: same as md_steps)
    "teacher_md_steps": 100,  # teacher Langevin steps (the teacher is ~100x slower)
    "temperature": 300.0,
    "timestep": 1.0,
    "seed": 0,
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _frame_atoms(frame: dict):
    from ase import Atoms

    return Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])


def evaluate_frames(calc, frames: list[dict]) -> dict:
    """Student predictions on labelled frames, with the reference labels next to them."""
    from ase.data import chemical_symbols

    pred_f, ref_f, numbers = [], [], []
    pred_e, ref_e = [], []
    pred_s, ref_s = [], []
    for frame in frames:
        atoms = _frame_atoms(frame)
        atoms.calc = calc
        n = len(atoms)
        forces = atoms.get_forces()
        energy = atoms.get_potential_energy()
        pred_f.append(forces)
        ref_f.append(frame["forces"])
        numbers.append(frame["numbers"])
        pred_e.append(energy / n)
        ref_e.append(frame["energy"] / n)
        if frame["stress"] is not None and np.all(frame["pbc"]):
            pred_s.append(atoms.get_stress(voigt=True))
            ref_s.append(frame["stress"])
    out = {
        "forces": (np.concatenate(pred_f), np.concatenate(ref_f)),
        "energy_per_atom": (np.array(pred_e), np.array(ref_e)),
        "numbers": np.concatenate(numbers),
    }
    if pred_s:
        out["stress"] = (np.array(pred_s), np.array(ref_s))
    out["symbols"] = [chemical_symbols[int(z)] for z in out["numbers"]]
    return out


def frame_errors(pairs: dict) -> dict:
    """forces / energy / stress sections of the report from `evaluate_frames` output."""
    from distiller.training.metrics import force_metrics, frame_metrics

    pred, ref = pairs["forces"]
    forces = force_metrics(pred, ref)
    forces["n_atoms"] = int(len(ref))
    symbols = np.array(pairs["symbols"])
    per_element = {}
    for el in sorted(set(pairs["symbols"]), key=pairs["symbols"].index):
        mask = symbols == el
        m = force_metrics(pred[mask], ref[mask])
        per_element[el] = {**m, "n_atoms": int(mask.sum())}
    forces["per_element"] = per_element
    fm = frame_metrics({k: v for k, v in pairs.items() if k in ("energy_per_atom", "stress")})
    pe, re = pairs["energy_per_atom"]
    energy = {
        "mae_per_atom": fm["energy_mae_per_atom"],
        "rmse_per_atom": float(np.sqrt(np.mean((pe - re) ** 2))),
        "n_frames": int(len(re)),
    }
    if "stress" in pairs:
        stress = {"mae": fm["stress_mae"], "mae_gpa": fm["stress_mae"] * EV_PER_A3_TO_GPA,
                  "n_frames": int(len(pairs["stress"][1]))}
    else:
        stress = {"mae": None, "mae_gpa": None, "n_frames": 0, "note": "no frame in the data has stress"}
    return {"forces": forces, "energy": energy, "stress": stress}


def _check_inputs(model_path, teacher: str, data_path, start):
    from distiller.data.dataset import open_dataset
    from distiller.validate.reference import check_reference_name, reference_elements
    from export.contract import read_metadata

    meta = read_metadata(model_path)
    dataset = open_dataset(data_path)
    if len(dataset) == 0:
        raise MLFFDError(f"dataset {data_path} has no frames")
    model_elements = list(meta["elements"])
    missing = [el for el in dataset.elements if el not in model_elements]
    if missing:
        raise MLFFDError(
            f"dataset {data_path} has element(s) {', '.join(missing)} that the model does not know "
            f"(model elements: {', '.join(model_elements)})"
        )
    check_reference_name(teacher)
    covered = reference_elements(teacher)
    if covered is not None:
        lacking = [el for el in dataset.elements if el not in covered]
        if lacking:
            raise MLFFDError(f"teacher {teacher} does not cover element(s) {', '.join(lacking)}")
    start_atoms, start_desc = _start_structure(start, dataset)
    bad = sorted(set(start_atoms.get_chemical_symbols()) - set(model_elements))
    if bad:
        raise MLFFDError(
            f"MD start structure has element(s) {', '.join(bad)} not in the model "
            f"(model elements: {', '.join(model_elements)})"
        )
    return meta, dataset, start_atoms, start_desc


def _start_structure(start, dataset):
    if start in (None, "", "data"):
        atoms = _frame_atoms(dataset.frame(0))
        return atoms, f"first frame of the data ({dataset.frame(0)['key']})"
    from distiller.data.systems import load_system

    system = load_system(start)
    return system.images[0].copy(), f"system {start} ({system.source})"


def validate(model_path, teacher: str, data_path, report_dir, md_steps: int = DEFAULTS["md_steps"],
             teacher_md_steps: int | None = DEFAULTS["teacher_md_steps"], nve_steps: int | None = None,
             temperature: float = DEFAULTS["temperature"], timestep: float = DEFAULTS["timestep"],
             seed: int = DEFAULTS["seed"], start: str | None = None, min_distance: float | None = None,
             max_frames: int | None = None, rdf_r_max: float = 5.0, rdf_bin_width: float = 0.05,
             device: str = "cpu", threads: int | None = None, verbose: bool = True) -> dict:
    """Validate a frozen student against a teacher; writes the report and returns it as a dict.

    md_steps: student Langevin steps (0 skips all MD); nve_steps: student NVE steps after it
    (default md_steps); teacher_md_steps: teacher Langevin steps (default 100, at most md_steps;
    0 skips the teacher run and the RDF comparison). start: 'data' (first frame, default) or a
    system spec (`si`, `cu:3x3x3`, a structure file)."""
    from distiller.calculator import MLFFDCalculator
    from distiller.validate.md import RDF, default_min_distance, nve_drift, run_md
    from distiller.validate.reference import load_reference

    log = _log if verbose else (lambda _m: None)
    for name, value in (("md-steps", md_steps), ("teacher-md-steps", teacher_md_steps), ("nve-steps", nve_steps)):
        if value is not None and int(value) < 0:
            raise MLFFDError(f"--{name} must be >= 0, got {value}")
    if timestep <= 0:
        raise MLFFDError(f"--timestep must be > 0 fs, got {timestep}")
    if max_frames is not None and int(max_frames) < 1:
        raise MLFFDError(f"--max-frames must be at least 1, got {max_frames} (omit it to use every frame)")
    if temperature <= 0 and md_steps:
        raise MLFFDError(f"--temperature must be > 0 K, got {temperature}")
    md_steps = int(md_steps)
    nve_steps = md_steps if nve_steps is None else int(nve_steps)
    teacher_md_steps = min(md_steps, DEFAULTS["teacher_md_steps"] if teacher_md_steps is None else int(teacher_md_steps))
    if md_steps == 0:
        nve_steps = teacher_md_steps = 0

    meta, dataset, start_atoms, start_desc = _check_inputs(model_path, teacher, data_path, start)
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise MLFFDError(f"report path {report_dir} exists and is not a directory")
    report_dir.mkdir(parents=True, exist_ok=True)

    student = MLFFDCalculator(str(model_path), device=device, threads=threads)
    frames = dataset.frames()
    if max_frames is not None:
        frames = frames[: int(max_frames)]
    log(f"validate: {len(frames)} frames of {data_path} with {model_path}")
    t0 = time.perf_counter()
    pairs = evaluate_frames(student, frames)
    eval_s = time.perf_counter() - t0
    report: dict = {
        "model": {"path": str(model_path), "elements": list(meta["elements"]), "cutoff": meta["cutoff"],
                  "num_interactions": meta["num_interactions"], "dtype": meta["dtype"],
                  "teacher": meta.get("teacher"), "dataset_fingerprint": meta.get("dataset_fingerprint")},
        "data": {"path": str(data_path), "frames": len(frames), "atoms": int(len(pairs["numbers"])),
                 "elements": dataset.elements, "teacher": dataset.metadata["teacher_name"],
                 "teacher_version": dataset.metadata["teacher_version"],
                 "fingerprint": dataset.fingerprint},
        **frame_errors(pairs),
    }
    notes = []
    if dataset.metadata["teacher_name"] and dataset.metadata["teacher_name"] != teacher:
        notes.append(f"the data was labelled by {dataset.metadata['teacher_name']!r}, the MD reference is {teacher!r}")
    if meta.get("dataset_fingerprint") and meta.get("dataset_fingerprint") == dataset.fingerprint:
        notes.append("this data set is the model's training set (same fingerprint): errors are not held-out errors")

    # ---- MD
    floor = float(min_distance) if min_distance else default_min_distance(start_atoms.get_chemical_symbols())
    t_limit = 3.0 * temperature
    md = {"start": start_desc, "n_atoms": len(start_atoms), "temperature_k": temperature,
          "timestep_fs": timestep, "seed": seed, "thermostat": "Langevin, friction 0.01 1/fs",
          "student_nvt_steps": md_steps, "student_nve_steps": nve_steps, "teacher_nvt_steps": teacher_md_steps,
          "min_distance_floor": floor, "max_temperature_limit_k": t_limit,
          "stable": None, "reasons": [], "min_distance": None, "max_temperature_k": None,
          "student_wall_s": None, "teacher_wall_s": None, "teacher_stopped": None}
    nve_empty = {"drift_ev_per_atom_per_ps": None, "abs_drift_ev_per_atom_per_ps": None,
                 "energy_std_ev_per_atom": None, "duration_ps": 0.0, "steps": 0}
    nve = dict(nve_empty)
    rdf_out = {"max_abs_diff": None, "r_max": rdf_r_max, "bin_width": rdf_bin_width,
               "frames_student": 0, "frames_teacher": 0}
    s_res = t_res = None
    s_rdf = t_rdf = None
    teacher_info = {"name": teacher, "version": None}
    if md_steps:
        s_rdf = RDF(rdf_r_max, rdf_bin_width)
        log(f"validate: student MD, {md_steps} Langevin + {nve_steps} NVE steps of {len(start_atoms)} atoms")
        s_res = run_md(start_atoms, student, label="student", temperature=temperature, timestep_fs=timestep,
                       seed=seed, nvt_steps=md_steps, nve_steps=nve_steps, rdf=s_rdf,
                       min_distance_floor=floor, max_temperature=t_limit, log=log)
        md["student_wall_s"] = s_res.wall_s
        md["min_distance"] = s_res.min_distance if np.isfinite(s_res.min_distance) else None
        md["max_temperature_k"] = s_res.max_temperature
        md["student_steps_done"] = s_res.steps_done
        md["student_mean_temperature_k"] = float(np.mean(s_res.temperature[len(s_res.temperature) // 2:]))
        if s_res.stopped:
            md["reasons"].append(f"student: {s_res.stopped}")
        md["stable"] = s_res.stopped is None
        nve = nve_drift(s_res, len(start_atoms)) if s_res.stopped is None else dict(nve_empty)
        if teacher_md_steps:
            ref_calc, teacher_info = load_reference(teacher, device=device, threads=threads)
            t_rdf = RDF(rdf_r_max, rdf_bin_width)
            log(f"validate: teacher ({teacher}) MD, {teacher_md_steps} Langevin steps")
            t_res = run_md(start_atoms, ref_calc, label="teacher", temperature=temperature, timestep_fs=timestep,
                           seed=seed, nvt_steps=teacher_md_steps, rdf=t_rdf, min_distance_floor=floor,
                           max_temperature=None, log=log)
            md["teacher_wall_s"] = t_res.wall_s
            md["teacher_stopped"] = t_res.stopped
            md["teacher_mean_temperature_k"] = float(np.mean(t_res.temperature[len(t_res.temperature) // 2:]))
            if s_rdf.frames and t_rdf.frames:
                rdf_out["max_abs_diff"] = float(np.max(np.abs(s_rdf.g() - t_rdf.g())))
            rdf_out["frames_teacher"] = t_rdf.frames
        rdf_out["frames_student"] = s_rdf.frames
        if teacher_md_steps < md_steps:
            notes.append(f"the teacher ran {teacher_md_steps} Langevin steps, the student {md_steps}; each RDF "
                         "averages the second half of its own NVT run")
    else:
        md["reasons"].append("MD skipped (md_steps = 0)")
    report["teacher"] = {"name": teacher_info.get("name", teacher), "version": teacher_info.get("version")}
    report["md"] = md
    report["nve"] = nve
    report["rdf"] = rdf_out
    report["units"] = UNITS
    report["timing"] = {"frames_eval_s": eval_s}
    report["notes"] = notes
    report["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    _write_plots(report_dir, pairs, s_res, t_res, s_rdf, t_rdf, len(start_atoms), report)
    for res, name in ((s_res, "md_student.extxyz"), (t_res, "md_teacher.extxyz")):
        if res is not None and res.frames:
            import ase.io

            ase.io.write(report_dir / name, res.frames, format="extxyz")
    (report_dir / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    (report_dir / "report.md").write_text(report_markdown(report))
    log(f"validate: report in {report_dir}")
    return _clean(report)


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, inf/nan to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# ----------------------------------------------------------------------------------- output


def _write_plots(report_dir: Path, pairs, s_res, t_res, s_rdf, t_rdf, n_atoms: int, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distiller.training.metrics import parity_plot

    parity_plot({"validation": {"forces": pairs["forces"], "energy_per_atom": pairs["energy_per_atom"]}},
                report_dir / "parity.png")

    fig, axes = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for res, style in ((s_res, "-"), (t_res, "--")):
        if res is None or not res.time_fs:
            continue
        t = np.array(res.time_fs) / 1000.0
        epot = np.array(res.epot) / n_atoms
        etot = (np.array(res.epot) + np.array(res.ekin)) / n_atoms
        axes[0].plot(t, etot, style, lw=1, label=f"{res.label} total")
        axes[0].plot(t, epot, style, lw=0.8, alpha=0.7, label=f"{res.label} potential")
        axes[1].plot(t, res.temperature, style, lw=0.8, label=res.label)
    if s_res is not None and "nve" in s_res.phase:
        t_nve = s_res.time_fs[s_res.phase.index("nve")] / 1000.0
        for ax in axes:
            ax.axvline(t_nve, color="grey", lw=0.6, ls=":")
        drift = report["nve"].get("drift_ev_per_atom_per_ps")
        if drift is not None:
            axes[0].set_title(f"student NVE from {t_nve:.3f} ps: drift {drift:.2e} eV/atom/ps")
    axes[0].set_ylabel("energy (eV/atom)")
    axes[1].set_ylabel("temperature (K)")
    axes[1].set_xlabel("time (ps)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report_dir / "energy_vs_time.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rdf, label, style in ((s_rdf, "student", "-"), (t_rdf, "teacher", "--")):
        if rdf is not None and rdf.frames:
            ax.plot(rdf.r, rdf.g(), style, label=f"{label} ({rdf.frames} frames)")
    diff = report["rdf"].get("max_abs_diff")
    if diff is not None:
        ax.set_title(f"max |g_student - g_teacher| = {diff:.3f}")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(report_dir / "rdf.png", dpi=120)
    plt.close(fig)


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def report_markdown(report: dict) -> str:
    f, e, s = report["forces"], report["energy"], report["stress"]
    md, nve, rdf = report["md"], report["nve"], report["rdf"]
    lines = [
        "# mlffd validation report",
        "",
        f"- model: `{report['model']['path']}` (elements {' '.join(report['model']['elements'])}, "
        f"cutoff {report['model']['cutoff']} A, {report['model']['num_interactions']} layers, {report['model']['dtype']})",
        f"- teacher: {report['teacher']['name']} ({report['teacher'].get('version') or 'version n/a'})",
        f"- data: `{report['data']['path']}`: {report['data']['frames']} frames, {report['data']['atoms']} atoms, "
        f"labelled by {report['data']['teacher']} (fingerprint {report['data']['fingerprint']})",
        f"- created: {report['created']}",
        "",
        "## Errors on the data (student vs labels)",
        "",
        "| quantity | value | unit |",
        "|---|---|---|",
        f"| force MAE | {_fmt(f['mae'])} | eV/A |",
        f"| force RMSE | {_fmt(f['rmse'])} | eV/A |",
        f"| force R^2 | {_fmt(f['r2'], '.6f')} | 1 |",
        f"| force relative MAE | {_fmt(f['rel_mae'])} | 1 |",
        f"| mean reference force norm | {_fmt(f['mean_abs_teacher'])} | eV/A |",
        f"| energy MAE | {_fmt(e['mae_per_atom'])} | eV/atom |",
        f"| energy RMSE | {_fmt(e['rmse_per_atom'])} | eV/atom |",
        f"| stress MAE ({s['n_frames']} frames) | {_fmt(s['mae'])} ({_fmt(s['mae_gpa'])} GPa) | eV/A^3 |",
        "",
        "Per element (forces, eV/A):",
        "",
        "| element | atoms | MAE | RMSE | R^2 |",
        "|---|---|---|---|---|",
    ]
    for el, m in f["per_element"].items():
        lines.append(f"| {el} | {m['n_atoms']} | {_fmt(m['mae'])} | {_fmt(m['rmse'])} | {_fmt(m['r2'], '.6f')} |")
    lines += [
        "",
        "## Molecular dynamics",
        "",
        f"Start: {md['start']} ({md['n_atoms']} atoms); {md['thermostat']}, T = {md['temperature_k']} K, "
        f"dt = {md['timestep_fs']} fs, seed {md['seed']}.",
        f"Student: {md['student_nvt_steps']} Langevin + {md['student_nve_steps']} NVE steps; "
        f"teacher: {md['teacher_nvt_steps']} Langevin steps.",
        "",
        "| check | value | unit |",
        "|---|---|---|",
        f"| stable | {_fmt(md['stable'])} | |",
        f"| shortest pair seen (floor {md['min_distance_floor']}) | {_fmt(md['min_distance'])} | A |",
        f"| highest temperature (limit {md['max_temperature_limit_k']:.0f}) | {_fmt(md['max_temperature_k'], '.1f')} | K |",
        f"| NVE drift ({nve['steps']} steps, {_fmt(nve['duration_ps'], '.3f')} ps) | {_fmt(nve['drift_ev_per_atom_per_ps'])} | eV/atom/ps |",
        f"| NVE total energy std | {_fmt(nve.get('energy_std_ev_per_atom'))} | eV/atom |",
        f"| RDF max abs difference ({rdf['frames_student']} / {rdf['frames_teacher']} frames) | {_fmt(rdf['max_abs_diff'])} | 1 |",
        f"| student MD wall time | {_fmt(md['student_wall_s'], '.1f')} | s |",
        f"| teacher MD wall time | {_fmt(md['teacher_wall_s'], '.1f')} | s |",
        "",
    ]
    if md["reasons"]:
        lines += ["Stability notes: " + "; ".join(md["reasons"]), ""]
    if report.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in report["notes"]] + [""]
    lines += ["Plots: `parity.png`, `energy_vs_time.png`, `rdf.png`.", ""]
    return "\n".join(lines)
