"""The property suite: every property computed by the same code for the teacher and the student.

    results = run_suite(student_calc, teacher_cache, crystal, SuiteSettings(...))

Order: each model relaxes the crystal to its own equilibrium; then EOS, elastic constants,
phonons, vacancies (and a surface on request), each teacher then student; then MD at each
temperature, sized by what is left of the budget once the static properties are done (their cost
is fixed). The teacher side goes through `CachedReference`, so it is paid for once per teacher
and system; the MD plan is stored beside the cache so a rerun asks for exactly the same
structures. `property_table` turns the results into rows of property | teacher | student |
deviation | goal | ok.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlffd.errors import MLFFDError
from mlffd.md import md_timestep
from mlffd.validate.properties import defects, dynamics, elasticity, phonons
from mlffd.validate.properties.crystal import Crystal, default_min_distance, equilibrium, repeats_for_width
from mlffd.validate.properties.protocol import GOALS, Context, failed_row, relative, row

# The properties computed on each model's relaxed crystal, in report order: a new one is its module's
# `Property` record (mlffd.validate.properties.protocol) and its line here.
STATIC_PROPERTIES = {p.name: p for p in (
    elasticity.EOS,
    elasticity.ELASTIC,
    phonons.PHONONS,
    defects.VACANCY,
    defects.SURFACE,
)}
PROPERTIES = (*STATIC_PROPERTIES, "md")
DEFAULT_PROPERTIES = ("eos", "elastic", "phonons", "vacancy", "md")
MIN_EQUILIBRATION, MIN_PRODUCTION = 100, 200  # MD steps per temperature whatever the budget
MAX_MD_STEPS = 5000
STUDENT_SHARE = 0.1  # of the budget kept for the student's side and the report
# MD verdict: a student counts as stable at a temperature only if its thermal state is the
# teacher's: potential energy above the crystal and NVE temperature within this fraction
THERMAL_STATE_TOLERANCE = 0.25


@dataclass
class SuiteSettings:
    properties: tuple = DEFAULT_PROPERTIES
    budget_minutes: float = 15.0
    cutoff: float = 5.0  # the student's: phonon and defect cells are wider than twice it
    temperatures: list | None = None  # K; None: one inside and one above the training range
    training_max_temperature: float | None = None  # K, from the model's metadata
    production_steps: int | None = None  # MD override (None: from the budget)
    equilibration_steps: int | None = None
    nve_ps: float | None = None  # the student's NVE run after production (None: from the budget)
    surface_miller: tuple | None = None
    seed: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def md_temperatures(self) -> list[float]:
        if self.temperatures:
            return [float(t) for t in self.temperatures]
        if self.training_max_temperature:
            t_max = float(self.training_max_temperature)
            return [round(0.8 * t_max, -1), round(t_max + 500.0, -1)]
        return [1200.0, 2000.0]


def check_properties(names) -> tuple:
    names = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise MLFFDError(f"unknown propert{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                         f"(choose from {', '.join(PROPERTIES)})")
    if not names:
        raise MLFFDError(f"no property to compute (an empty list; choose from {', '.join(PROPERTIES)})")
    return names


class _Clock:
    """Wall time and teacher calls of one side of one property."""

    def __init__(self, teacher):
        self.teacher = teacher
        self.log: dict = {}

    def run(self, name: str, side: str, fn, *args, **kwargs):
        calls, hits = self.teacher.calls, self.teacher.hits
        if side == "teacher":
            self.teacher.tag = name
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            entry = self.log.setdefault(name, {})
            entry[f"{side}_s"] = round(time.perf_counter() - start, 2)
            if side == "teacher":
                entry["teacher_calls"] = self.teacher.calls - calls
                entry["teacher_cache_hits"] = self.teacher.hits - hits


def _student_side(fn, *args, **kwargs) -> dict:
    """A property of the student; a student that cannot be relaxed or breaks on the way is a result
    (reported as a failure), not a crash of the validation."""
    try:
        return fn(*args, **kwargs)
    except MLFFDError as exc:
        return {"failure": str(exc)}


def run_suite(student, teacher, crystal: Crystal, settings: SuiteSettings, log=print) -> dict:
    """Both sides of every requested property; `teacher` is a `CachedReference`."""
    start = time.perf_counter()
    budget_s = 60.0 * settings.budget_minutes
    clock = _Clock(teacher)
    width = 2.0 * settings.cutoff
    out: dict = {"crystal": {"name": crystal.name, "source": crystal.source, "cubic": crystal.cubic,
                             "unit_atoms": len(crystal.unit), "primitive_atoms": len(crystal.primitive)},
                 "properties": {}}

    def note(name: str) -> None:
        entry = clock.log.get(name, {})
        log(f"validate: {name:<11} teacher {entry.get('teacher_s', 0):6.1f} s ({entry.get('teacher_calls', 0)} calls, "
            f"{entry.get('teacher_cache_hits', 0)} cached) | student {entry.get('student_s', 0):6.1f} s")

    eq_t = clock.run("equilibrium", "teacher", equilibrium, crystal, teacher)
    eq_s = clock.run("equilibrium", "student", _student_side, equilibrium, crystal, student)
    note("equilibrium")
    student_failed = isinstance(eq_s, dict)
    failed = {"failure": f"the student's equilibrium could not be found: {eq_s['failure']}"} if student_failed else None

    context = Context(crystal, width, settings.seed, settings.surface_miller)
    for name, prop in STATIC_PROPERTIES.items():
        if name not in settings.properties:
            continue
        t_side = clock.run(name, "teacher", prop.compute, eq_t, teacher, context)
        s_side = failed or clock.run(name, "student", _student_side, prop.compute, eq_s, student, context)
        out["properties"][name] = {"teacher": t_side, "student": s_side}
        if prop.compare is not None:
            prop.compare(out["properties"][name], context)
        note(name)

    if "md" in settings.properties:
        out["properties"]["md"] = _run_md(student, teacher, crystal, eq_t, eq_s if not student_failed else None,
                                          settings, clock, budget_s - (time.perf_counter() - start), log)
    out["timing"] = clock.log
    out["wall_s"] = round(time.perf_counter() - start, 1)
    out["teacher_calls"] = {"calls": teacher.calls, "cache_hits": teacher.hits, "cache": str(teacher.path),
                            "frames_in_cache": len(teacher)}
    return out


# ---------------------------------------------------------------------------------------- MD


def _md_plan(teacher, settings: SuiteSettings, n_atoms: int, temperatures: list, timesteps: list,
             remaining_s: float, start_structure) -> dict:
    """Equilibration / production / NVE steps per temperature. Stored beside the cache under the
    settings that decide it, so a rerun (or a resumed run) uses the same plan even though the
    teacher now costs nothing."""
    key = json.dumps({"crystal": start_structure, "n": n_atoms, "T": temperatures, "dt": timesteps,
                      "budget": settings.budget_minutes, "prod": settings.production_steps,
                      "eq": settings.equilibration_steps, "nve": settings.nve_ps, "seed": settings.seed},
                     sort_keys=True)
    plans_path = Path(str(teacher.path) + ".plans.json")
    plans = json.loads(plans_path.read_text()) if plans_path.exists() else {}
    if key in plans:
        return plans[key]
    s_per_atom = teacher.call_seconds / teacher.call_atoms if teacher.call_atoms else 0.01
    step_s = s_per_atom * n_atoms
    steps = int(max(0.0, remaining_s * (1.0 - STUDENT_SHARE)) / (step_s * len(temperatures)))
    steps = min(MAX_MD_STEPS, max(MIN_EQUILIBRATION + MIN_PRODUCTION, steps))
    eq_steps = settings.equilibration_steps or max(MIN_EQUILIBRATION, 50 * round(0.3 * steps / 50))
    prod_steps = settings.production_steps or max(MIN_PRODUCTION, 50 * round((steps - eq_steps) / 50))
    nve_ps = settings.nve_ps if settings.nve_ps is not None else min(20.0, max(1.0, 0.5 * settings.budget_minutes))
    plan = {"equilibration_steps": int(eq_steps), "production_steps": int(prod_steps), "nve_ps": float(nve_ps),
            "teacher_s_per_step_estimate": round(step_s, 3),
            "over_budget": bool((eq_steps + prod_steps) * step_s * len(temperatures) > max(remaining_s, 0.0))}
    plans[key] = plan
    tmp = plans_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plans, indent=1))
    os.replace(tmp, plans_path)
    return plan


def protocol_timestep(atoms, temperature: float) -> float:
    """fs: the data engine's step for the elements (2 fs for Si, Cu; 1 fs with O), at most 1 fs
    above 1500 K."""
    dt = md_timestep(atoms)
    return min(dt, 1.0) if temperature > 1500.0 else dt


def _run_md(student, teacher, crystal, eq_t, eq_s, settings, clock, remaining_s, log) -> dict:
    repeats = repeats_for_width(eq_t.unit, 1.5 * settings.cutoff)
    start_t = eq_t.unit.repeat(repeats)
    temperatures = settings.md_temperatures()
    timesteps = [protocol_timestep(start_t, t) for t in temperatures]
    floor = default_min_distance(start_t.get_chemical_symbols())
    plan = _md_plan(teacher, settings, len(start_t), temperatures, timesteps, remaining_s, crystal.name)
    log(f"validate: md plan {plan['equilibration_steps']} + {plan['production_steps']} steps at "
        f"{', '.join(f'{t:g} K' for t in temperatures)} ({len(start_t)} atoms); student NVE {plan['nve_ps']:g} ps")
    out = {"supercell": list(repeats), "n_atoms": len(start_t), "plan": plan, "min_distance_floor": floor,
           "training_max_temperature_k": settings.training_max_temperature, "runs": {}}
    for temperature, dt in zip(temperatures, timesteps):
        protocol = dynamics.Protocol(temperature=temperature, timestep_fs=dt,
                                     equilibration_steps=plan["equilibration_steps"],
                                     production_steps=plan["production_steps"], seed=settings.seed,
                                     min_distance=floor)
        name = f"md {temperature:g} K"
        t_traj = clock.run(name, "teacher", dynamics.run_protocol, start_t, teacher, protocol, label="teacher",
                           keep_labels=True, progress=settings.progress)
        run = {"temperature_k": temperature, "timestep_fs": dt,
               "teacher": _summary(t_traj, start_t, dt, protocol, eq_t.energy_per_atom)}
        if eq_s is not None:
            t_max = max([temperature] + [v for v, p in zip(t_traj.temperature, t_traj.phase) if p != "equilibration"])
            s_protocol = dynamics.Protocol(**{**protocol.__dict__, "nve_steps": int(round(1000.0 * plan["nve_ps"] / dt)),
                                              "max_temperature": dynamics.RUNAWAY_FACTOR * t_max})
            start_s = eq_s.unit.repeat(repeats)
            s_traj = clock.run(name, "student", dynamics.run_protocol, start_s, student, s_protocol, label="student",
                               progress=settings.progress)
            run["student"] = _summary(s_traj, start_s, dt, s_protocol, eq_s.energy_per_atom)
            run["student"]["nve"] = dynamics.nve_drift(s_traj, len(start_s))
            run.update(_compare_runs(student, t_traj, s_traj, start_t, start_s, dt, protocol))
        else:
            run["student"] = {"failure": "no equilibrium structure"}
        run["above_training_range"] = (None if settings.training_max_temperature is None
                                       else bool(temperature > settings.training_max_temperature))
        out["runs"][f"{temperature:g}"] = run
        note = clock.log.get(name, {})
        log(f"validate: {name:<11} teacher {note.get('teacher_s', 0):6.1f} s ({note.get('teacher_calls', 0)} calls, "
            f"{note.get('teacher_cache_hits', 0)} cached) | student {note.get('student_s', 0):6.1f} s")
    return out


SERIES_POINTS = 1000  # time series in the report are thinned to at most this many points


def _summary(traj, start, dt: float, protocol, crystal_energy_per_atom: float) -> dict:
    """`excess_epot_ev_per_atom`: the production's mean potential energy above the model's own
    relaxed crystal (what the thermal motion costs at this temperature, comparable across models)."""
    n = len(start)
    every = max(1, len(traj.time_fs) // SERIES_POINTS)
    epot = dynamics.phase_mean(traj, traj.epot, "production")
    return {
        "stable": traj.stopped is None,
        "stopped": traj.stopped,
        "steps_done": traj.steps_done,
        "steps_planned": protocol.equilibration_steps + protocol.production_steps + protocol.nve_steps,
        "simulated_ps": traj.steps_done * dt / 1000.0,
        "mean_temperature_k": dynamics.phase_mean(traj, traj.temperature, "production"),
        "mean_epot_ev_per_atom": None if epot is None else epot / n,
        "excess_epot_ev_per_atom": None if epot is None else epot / n - crystal_energy_per_atom,
        "mean_nve_temperature_k": dynamics.phase_mean(traj, traj.temperature, "nve"),
        "wall_s": round(traj.wall_s, 1),
        "series": {"time_ps": [t / 1000.0 for t in traj.time_fs[::every]],
                   "temperature_k": traj.temperature[::every],
                   "epot_ev_per_atom": [e / n for e in traj.epot[::every]],
                   "phase": traj.phase[::every]},
    }


def _compare_runs(student, t_traj, s_traj, start_t, start_s, dt, protocol) -> dict:
    """Structure (RDF), dynamics (MSD, D) and the student's errors on the teacher's own frames."""
    from mlffd.training.metrics import force_metrics

    out: dict = {}
    if t_traj.forces:  # the student on the teacher's production frames (real dynamics)
        frame = start_t.copy()
        frame.calc = student
        pred_f, pred_e = [], []
        try:
            for pos in t_traj.positions:
                frame.positions = pos
                pred_f.append(np.array(frame.get_forces()))
                pred_e.append(float(frame.get_potential_energy()))
            metrics = force_metrics(np.concatenate(pred_f), np.concatenate(t_traj.forces))
            e_err = np.abs(np.array(pred_e) - np.array(t_traj.energies)) / len(start_t)
            out["teacher_frames"] = {"frames": len(t_traj.positions), "force_rel_mae": metrics["rel_mae"],
                                     "force_mae_ev_per_a": metrics["mae"], "force_r2": metrics["r2"],
                                     "energy_mae_ev_per_atom": float(e_err.mean())}
        except MLFFDError as exc:
            out["teacher_frames"] = {"failure": str(exc)}
    sample_fs = protocol.sample_every * dt
    rdfs = {}
    for side, traj, start in (("teacher", t_traj, start_t), ("student", s_traj, start_s)):
        n_prod = min(len(t_traj.positions), len(traj.positions))  # the same window on both sides
        if n_prod < 2:
            continue
        rdf = dynamics.RDF()
        frame = start.copy()
        for pos in traj.positions[:n_prod]:
            frame.positions = pos
            rdf.add(frame)
        rdfs[side] = rdf
        out.setdefault("msd", {})[side] = dynamics.mean_squared_displacement(traj.positions[:n_prod], start.numbers,
                                                                            sample_fs)
    if "teacher" in rdfs:
        half = len(t_traj.positions) // 2
        a, b = dynamics.RDF(), dynamics.RDF()
        frame = start_t.copy()
        for k, pos in enumerate(t_traj.positions):
            frame.positions = pos
            (a if k < half else b).add(frame)
        out["rdf"] = {"r_A": rdfs["teacher"].r.tolist(), "teacher": rdfs["teacher"].g().tolist(),
                      "frames": rdfs["teacher"].frames,
                      "teacher_halves_deviation": dynamics.rdf_deviation(a.g(), b.g()) if half >= 2 else None}
        if "student" in rdfs:
            out["rdf"]["student"] = rdfs["student"].g().tolist()
            out["rdf"]["deviation"] = dynamics.rdf_deviation(rdfs["student"].g(), rdfs["teacher"].g())
            out["rdf"]["max_abs_diff"] = float(np.max(np.abs(rdfs["student"].g() - rdfs["teacher"].g())))
    return out


# ------------------------------------------------------------------------------------ table


def property_table(results: dict) -> list[dict]:
    """One row per compared number: property | unit | teacher | student | deviation | goal | ok."""
    rows: list[dict] = []
    props = results["properties"]
    for name, prop in STATIC_PROPERTIES.items():
        if name in props:
            rows.extend(prop.rows(props[name]))
    if "md" in props:
        for key, run in props["md"]["runs"].items():
            rows.extend(_md_rows(key, run))
    return rows


def _thermal_state_failures(t: dict, s: dict) -> list[str]:
    """Why a student that ran to the end is still not in the teacher's state at this temperature:
    its production potential energy above the crystal off by more than THERMAL_STATE_TOLERANCE, or
    NVE heating it by more than that fraction (a student that finds a spurious low-energy region
    holds together, its potential energy falls and NVE heats it). NVE cooling is the opposite
    exchange, a melt or another phase taking up latent heat: `_nve_cooling_note` says so."""
    if not s["stable"]:
        return []
    out = []
    te, se = t.get("excess_epot_ev_per_atom"), s.get("excess_epot_ev_per_atom")
    if te is not None and se is not None and te > 0 and abs(se - te) > THERMAL_STATE_TOLERANCE * te:
        out.append(f"student: potential energy above the crystal {1000 * se:.1f} meV/atom vs the teacher's "
                   f"{1000 * te:.1f} (more than {100 * THERMAL_STATE_TOLERANCE:.0f} % apart)")
    t_prod, t_nve = s.get("mean_temperature_k"), s.get("mean_nve_temperature_k")
    if t_prod and t_nve is not None and t_nve > (1.0 + THERMAL_STATE_TOLERANCE) * t_prod:
        out.append(f"student: NVE temperature {t_nve:.0f} K after a {t_prod:.0f} K production "
                   f"(more than {100 * THERMAL_STATE_TOLERANCE:.0f} % hotter)")
    return out


def _nve_cooling_note(s: dict) -> str | None:
    """A student that cools in NVE by more than THERMAL_STATE_TOLERANCE turned kinetic energy into
    potential energy: it melted or changed phase. That is physics above the melting point, so the
    stability row stands; the note says it, since the teacher's NVE is not run to compare."""
    t_prod, t_nve = s.get("mean_temperature_k"), s.get("mean_nve_temperature_k")
    if not (s.get("stable") and t_prod and t_nve is not None and t_nve < (1.0 - THERMAL_STATE_TOLERANCE) * t_prod):
        return None
    return (f"student: NVE temperature {t_nve:.0f} K after a {t_prod:.0f} K production: it melted or changed "
            f"phase (latent heat; the teacher's NVE is not run: compare the production rows)")


def _md_rows(key: str, run: dict) -> list[dict]:
    rows = []
    t, s = run["teacher"], run["student"]
    where = f"MD {key} K"
    if "failure" in s:
        return [failed_row(f"{where}: stable", "", t["stable"], s["failure"])]
    wrong_state = _thermal_state_failures(t, s)
    stable = s["stable"] and not wrong_state
    ok = stable if t["stable"] else None  # a teacher that breaks down says nothing of the student
    stable_row = row(f"{where}: stable", "", f"{'yes' if t['stable'] else 'no'} ({t['simulated_ps']:.2f} ps)",
                     f"{'yes' if stable else 'no'} ({s['simulated_ps']:.2f} ps)", None, "", None, ok=ok)
    notes = [f"{n}: {r}" for n, r in (("teacher", t["stopped"]), ("student", s["stopped"])) if r] + wrong_state
    cooled = _nve_cooling_note(s)
    if cooled:
        notes.append(cooled)
    if notes:
        stable_row["note"] = "; ".join(notes)
    rows.append(stable_row)
    if t.get("excess_epot_ev_per_atom") is not None and s.get("excess_epot_ev_per_atom") is not None:
        te, se = 1000.0 * t["excess_epot_ev_per_atom"], 1000.0 * s["excess_epot_ev_per_atom"]
        rows.append(row(f"{where}: potential energy above the crystal", "meV/atom", te, se, relative(se, te), "%",
                         100.0 * THERMAL_STATE_TOLERANCE))
    frames = run.get("teacher_frames", {})
    if "force_rel_mae" in frames:
        above = run.get("above_training_range")
        goal = GOALS["md_force_rel_mae_above_range" if above else "md_force_rel_mae_in_range"]
        label = f"{where}: force rel. MAE on teacher frames" + (" (above training T)" if above else "")
        rows.append(row(label, "%", None, None, 100.0 * frames["force_rel_mae"], "%", goal, signed=False))
        rows.append(row(f"{where}: energy MAE on teacher frames", "meV/atom", None, None,
                         1000.0 * frames["energy_mae_ev_per_atom"], "meV/atom", None, signed=False))
    elif "failure" in frames:
        rows.append(failed_row(f"{where}: forces on teacher frames", "%", None, frames["failure"]))
    rdf = run.get("rdf", {})
    if "deviation" in rdf:
        rdf_row = row(f"{where}: RDF integrated abs deviation", "%", None, None, 100.0 * rdf["deviation"], "%",
                      GOALS["rdf"], signed=False)
        noise = rdf.get("teacher_halves_deviation")
        if noise is not None:
            rdf_row["note"] = f"noise floor (the teacher's two halves against each other): {100.0 * noise:.1f} %"
            if not rdf_row["ok"] and rdf["deviation"] <= noise:  # within the noise of a run this short
                rdf_row["ok"] = None
                rdf_row["note"] += "; the deviation is within it: longer MD (--md-steps) decides"
        rows.append(rdf_row)
    msd = run.get("msd", {})
    if "teacher" in msd and "student" in msd:
        for element, tm in msd["teacher"].get("per_element", {}).items():
            sm = msd["student"].get("per_element", {}).get(element)
            if sm and (tm["diffusive"] or sm["diffusive"]):
                rows.append(row(f"{where}: D({element})", "A^2/ps", tm["D_A2_per_ps"], sm["D_A2_per_ps"],
                                 relative(sm["D_A2_per_ps"], tm["D_A2_per_ps"]), "%", None))
    drift = s.get("nve", {}).get("drift_ev_per_atom_per_ps")
    if drift is not None:
        rows.append(row(f"{where}: student NVE drift ({s['nve']['duration_ps']:.1f} ps)", "eV/atom/ps", None, drift,
                         None, "", None))
    return rows

