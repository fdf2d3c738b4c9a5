"""`mlffd validate`: a frozen student against its teacher, property by property.

    report = validate("model.pt", "sevennet-0", "report/", system="si")

The physics suite (mlffd.validate.properties) computes the equation of state, elastic
constants, phonons, vacancy energies (a surface on request) and MD at two temperatures with the
same code for the student and the teacher; the teacher's side is cached by structure
(`CachedReference`), so a second student of the same system costs no teacher call. With `data`,
force/energy/stress errors on held-out labelled frames are added. Writes `report.json`,
`report.md` and plots (eos.png, phonons.png, elastic.png, md.png, rdf.png, msd.png, parity.png)
into `report_dir`. See docs/validate.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlffd.calculator import MLFFDCalculator
from mlffd.data.dataset import open_dataset
from mlffd.data.systems import builtin_for_elements
from mlffd.errors import MLFFDError
from mlffd.export.contract import read_metadata
from mlffd.reference import check_reference_name, reference_elements
from mlffd.training.metrics import force_metrics, frame_metrics, parity_plot
from mlffd.validate.properties.crystal import load_crystal
from mlffd.validate.properties.report import table_markdown, write_plots
from mlffd.validate.properties.suite import (
    DEFAULT_PROPERTIES,
    SuiteSettings,
    check_properties,
    property_table,
    run_suite,
)
from mlffd.validate.reference_cache import CachedReference, default_cache_path

EV_PER_A3_TO_GPA = 160.21766208


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _frame_atoms(frame: dict):
    return Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=frame["pbc"])


def evaluate_frames(calc, frames: list[dict]) -> dict:
    """Student predictions on labelled frames, with the reference labels next to them."""
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


def _held_out_frames(model_elements: list[str], data_path, max_frames: int | None) -> list[dict]:
    dataset = open_dataset(data_path)
    if len(dataset) == 0:
        raise MLFFDError(f"dataset {data_path} has no frames")
    missing = [el for el in dataset.elements if el not in model_elements]
    if missing:
        raise MLFFDError(
            f"dataset {data_path} has element(s) {', '.join(missing)} that the model does not know "
            f"(model elements: {', '.join(model_elements)})"
        )
    frames = dataset.frames()
    return frames[: int(max_frames)] if max_frames is not None else frames


def validate(model_path: str | Path, teacher: str, report_dir: str | Path, *, system: str | None = None,
             data: str | Path | None = None, properties: Sequence[str] = DEFAULT_PROPERTIES,
             budget_minutes: float = 15.0, temperatures: Sequence[float] | None = None,
             production_steps: int | None = None, equilibration_steps: int | None = None,
             nve_ps: float | None = None, surface: tuple[int, int, int] | None = None,
             reference_cache: str | Path | None = None, max_frames: int | None = None, seed: int = 0,
             device: str = "cpu", threads: int | None = None, verbose: bool = True) -> dict:
    """Validate a frozen student against a teacher; writes the report and returns it.

    system: built-in name or structure file (default: the built-in for the model's elements);
    data: optional held-out labelled frames; reference_cache: the teacher cache file (default
    under ~/.cache/mlffd/reference); temperatures: MD temperatures in K (default: one inside and
    one above the model's training range)."""
    meta = read_metadata(model_path)
    elements = list(meta["elements"])
    properties = check_properties(properties)
    check_reference_name(teacher)
    if budget_minutes <= 0:
        raise MLFFDError(f"the validation budget must be > 0 minutes, got {budget_minutes}")
    if max_frames is not None and int(max_frames) < 1:
        raise MLFFDError(f"max_frames must be at least 1, got {max_frames} (None uses every frame)")
    for name, value in (("production_steps", production_steps), ("equilibration_steps", equilibration_steps)):
        if value is not None and int(value) < 1:
            raise MLFFDError(f"{name} must be >= 1, got {value}")
    for t in temperatures or []:
        if not 0 < float(t) <= 10000:
            raise MLFFDError(f"MD temperatures must be in (0, 10000] K, got {t}")
    if system is None:
        system = builtin_for_elements(elements)
        if system is None:
            raise MLFFDError(f"no built-in system for the model's elements ({' '.join(elements)}): name the system "
                             "(a built-in name or a structure file of the crystal)")
    crystal = load_crystal(system)
    unknown = [el for el in crystal.elements if el not in elements]
    if unknown:
        raise MLFFDError(f"system {system} has element(s) {', '.join(unknown)} that the model does not know "
                         f"(model elements: {', '.join(elements)})")
    covered = reference_elements(teacher)
    if covered is not None and set(crystal.elements) - covered:
        raise MLFFDError(f"teacher {teacher} does not cover element(s) "
                         f"{', '.join(sorted(set(crystal.elements) - covered))}")
    frames = _held_out_frames(elements, data, max_frames) if data else None
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise MLFFDError(f"report path {report_dir} exists and is not a directory")

    student = MLFFDCalculator(str(model_path), device=device, threads=threads)
    train_t = meta.get("training_temperatures_k")
    settings = SuiteSettings(properties=properties, budget_minutes=float(budget_minutes), cutoff=float(meta["cutoff"]),
                             temperatures=temperatures, training_max_temperature=max(train_t) if train_t else None,
                             production_steps=production_steps, equilibration_steps=equilibration_steps,
                             nve_ps=nve_ps, surface_miller=surface, seed=seed, progress=verbose)
    model_info = {"path": str(model_path), "elements": elements, "cutoff": meta["cutoff"],
                  "num_interactions": meta["num_interactions"], "dtype": meta["dtype"],
                  "teacher": meta.get("teacher"), "dataset_fingerprint": meta.get("dataset_fingerprint"),
                  "training_temperatures_k": train_t}
    return validate_calculator(student, model_info, teacher, crystal, report_dir, settings, frames=frames,
                               reference_cache=reference_cache, device=device, threads=threads, verbose=verbose)


def validate_calculator(student, model_info: dict, teacher: str, crystal, report_dir, settings: SuiteSettings, *,
                        frames: list[dict] | None = None, reference_cache=None, device: str = "cpu",
                        threads: int | None = None, verbose: bool = True) -> dict:
    """The suite for any ASE calculator as the student (the tests use ASE's EMT and perturbed
    copies of it); what `validate` runs once it has loaded the frozen model."""
    log = _log if verbose else (lambda _m: None)
    report_dir = Path(report_dir)
    cache_path = Path(reference_cache) if reference_cache else default_cache_path(teacher, crystal.name)
    with CachedReference(teacher, cache_path, device=device, threads=threads) as reference:
        report_dir.mkdir(parents=True, exist_ok=True)
        log(f"validate: {model_info['path']} vs {teacher} on {crystal.name} ({', '.join(settings.properties)}; "
            f"budget {settings.budget_minutes:g} min; teacher cache {cache_path}, {len(reference)} frames)")
        results = run_suite(student, reference, crystal, settings, log=log)
        teacher_info = {"name": reference.teacher_name, "version": reference.teacher_version}
    table = property_table(results)
    report: dict = {
        "model": model_info,
        "teacher": teacher_info,
        "system": results["crystal"],
        "settings": {"properties": list(settings.properties), "budget_minutes": settings.budget_minutes,
                     "md_temperatures_k": settings.md_temperatures(), "seed": settings.seed,
                     "cutoff_for_supercells_A": settings.cutoff},
        "properties": results["properties"],
        "table": table,
        "teacher_calls": results["teacher_calls"],
        "timing": {"suite_wall_s": results["wall_s"], "per_property": results["timing"]},
        "notes": [],
    }
    if settings.training_max_temperature is None and "md" in settings.properties:
        report["notes"].append("the model does not record its training temperatures: every MD temperature is "
                               "judged against the in-range force goal")
    if frames is not None:
        pairs = evaluate_frames(student, frames)
        report["frames"] = frame_errors(pairs)
        parity_plot({"held-out": {"forces": pairs["forces"], "energy_per_atom": pairs["energy_per_atom"]}},
                    report_dir / "parity.png")
    report["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    report = _clean(report)
    report["plots"] = write_plots(report_dir, report) + (["parity.png"] if frames is not None else [])
    _write_report(report_dir, report)
    log(f"validate: report in {report_dir}/report.md")
    return report


def rejudge(report_dir: str | Path) -> dict:
    """Judge a finished report again under the current rules: the table of `report.json` recomputed
    from its stored measurements (no model or teacher call), `report.json` and `report.md` rewritten.
    For when what a row judges changes; a row whose measurement changed needs validate again."""
    report_dir = Path(report_dir)
    path = report_dir / "report.json"
    if not path.is_file():
        raise MLFFDError(f"no validation report at {path}")
    report = json.loads(path.read_text())
    report["table"] = _clean(property_table({"properties": report["properties"]}))
    _write_report(report_dir, report)
    return report


def _write_report(report_dir: Path, report: dict) -> None:
    """report.json and report.md of a finished report (its table included)."""
    (report_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (report_dir / "report.md").write_text(report_markdown(report, table_markdown(report["table"])))


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


def report_markdown(report: dict, table: str) -> str:
    calls = report["teacher_calls"]
    model = report["model"]
    lines = [
        "# mlffd validation report",
        "",
        f"- model: `{model['path']}` (elements {' '.join(model['elements'])}, cutoff {model['cutoff']} A, "
        f"{model['num_interactions']} layers, {model['dtype']})",
        f"- teacher: {report['teacher']['name']} ({report['teacher']['version']})",
        f"- system: {report['system']['name']} ({report['system']['source']}); every property is computed by the "
        "same code for both models, each at its own relaxed equilibrium",
        f"- teacher calls: {calls['calls']} new, {calls['cache_hits']} answered by the cache `{calls['cache']}`",
        f"- suite wall time: {report['timing']['suite_wall_s']:.0f} s; created {report['created']}",
        "",
        "## Student vs teacher",
        "",
        table,
        "",
    ]
    md = report["properties"].get("md")
    if md:
        plan = md["plan"]
        lines += [f"MD: {md['n_atoms']} atoms ({'x'.join(str(r) for r in md['supercell'])} unit cells), from each "
                  f"model's relaxed crystal: {plan['equilibration_steps']} Langevin steps of equilibration, "
                  f"{plan['production_steps']} of production (both models, same seed), then {plan['nve_ps']:g} ps "
                  "of NVE for the student alone.", ""]
    if "frames" in report:
        f = report["frames"]
        lines += ["## Held-out labelled frames", "",
                  "| quantity | value |", "|---|---|",
                  f"| force MAE (eV/A) | {f['forces']['mae']:.4g} |",
                  f"| force R^2 | {f['forces']['r2']:.5f} |",
                  f"| force relative MAE | {f['forces']['rel_mae']:.4g} |",
                  f"| energy MAE (eV/atom) | {f['energy']['mae_per_atom']:.4g} |",
                  f"| stress MAE (GPa) | {f['stress']['mae_gpa'] if f['stress']['mae_gpa'] is None else format(f['stress']['mae_gpa'], '.4g')} |",
                  ""]
    if report["notes"]:
        lines += ["Notes:", ""] + [f"- {n}" for n in report["notes"]] + [""]
    lines += ["Plots: " + ", ".join(f"`{p}`" for p in report["plots"]) + ".", ""]
    return "\n".join(lines)
