"""The fidelity lab: judge a training recipe by the teacher's physics, cheaply, and keep the result.

One teacher-labelled pool per system holds frames of every sampler kind (made once, resumable);
a recipe (recipes.yaml) names which frames of the pool to train on, the training settings and the
training budget. `run` trains the recipe for each seed, exports it, validates it against the
teacher (the teacher's side comes from validate's cache: after the first recipe, 0 teacher calls)
and appends one row per seed to `benchmarks/results/fidelity/<system>.json`, then re-renders
`<system>.md` (every property deviation, the milestone verdict, epochs, minutes).

    python benchmarks/fidelity/lab.py pool si --dir lab/si                 # label the pool (minutes)
    python benchmarks/fidelity/lab.py run si default --dir lab/si --seeds 0,1
    python benchmarks/fidelity/lab.py table si                             # re-render the table
    python benchmarks/fidelity/lab.py revalidate si phonons --dir lab/si   # a property's rows again

`revalidate` reruns validate's named properties on every kept model (runs/<recipe>-s<seed>/model.pt)
and replaces those rows of each table row: for when what a property row measures changes.

Heavy steps run one at a time: two jobs on the 2 cores slow each other far more than 2x, and the
recipes are priced in training minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
RECIPES = HERE / "recipes.yaml"
RESULTS = HERE.parent / "results" / "fidelity"
# Validation settings shared by every row (the teacher cache serves them all): the MD temperatures
# of the table and the demo distill's validation budget.
VALIDATE = {"temperatures": [1200.0, 2000.0], "budget_minutes": 4.5, "seed": 0}
# Each system's `targets` (property name in validate's table: largest |deviation|) and `columns`
# (header, [property names, first found wins], format) live beside its recipes in recipes.yaml.


def load_recipes(system: str) -> dict:
    book = yaml.safe_load(RECIPES.read_text())
    if system not in book:
        sys.exit(f"lab: no system {system!r} in {RECIPES} (has {', '.join(book)})")
    return book[system]


# -- the pool ----------------------------------------------------------------------------------
def make_pool(system: str, lab: Path, teacher: str) -> None:
    """Label every plan of the system's pool into pool.h5 and the held-out set into test.h5."""
    from mlffd.data.generate import generate_dataset
    from mlffd.distill import MD_STRIDE
    from mlffd.teachers import load_teacher

    spec = load_recipes(system)
    lab.mkdir(parents=True, exist_ok=True)
    calc = load_teacher(teacher)
    for plan in spec["pool"]:
        plan = dict(plan)
        generate_dataset(lab / "pool.h5", teacher, [spec["structure"]], plan.pop("frames"),
                         temperatures=plan.pop("temperatures"), calculator=calc, md_stride=MD_STRIDE,
                         **plan)
    test = dict(spec["test"])
    generate_dataset(lab / "test.h5", teacher, [spec["structure"]], test.pop("frames"),
                     temperatures=test.pop("temperatures"), calculator=calc, md_fraction=0.0, **test)


def select_frames(pool, selection: dict, structure: str) -> list[int]:
    """Indices of the pool frames a recipe trains on. `selection` maps a sampler name, optionally
    with temperatures (`rattle@30,100`), to a count; within a kind the order is a fixed hash of the
    frame key, so a recipe always takes the same frames and a larger count takes a superset.
    Frames around the structure as given are meant, unless the name starts with `relaxed/` (the
    pool parts made with `relax: true`, around the teacher's relaxed structure).
    Displaced pairs (`pair`) are taken two by two."""
    from mlffd.data.generate import RELAXED_SUFFIX

    keys = pool.keys()
    kinds = [(f["sampler"], f["temperature"]) for f in (pool.frame(i) for i in range(len(pool)))]
    chosen: list[int] = []
    for name, count in selection.items():
        centre, _, kind = name.rpartition("/")
        if centre not in ("", "relaxed"):
            sys.exit(f"lab: frame selection {name!r}: only `relaxed/` may prefix a sampler")
        prefix = structure + (RELAXED_SUFFIX if centre else "") + "/"
        sampler, _, temps = kind.partition("@")
        wanted = {float(t) for t in temps.split(",")} if temps else None
        members = [i for i, (s, t) in enumerate(kinds)
                   if s == sampler and (wanted is None or t in wanted) and keys[i].startswith(prefix)]
        if sampler == "pair":  # both frames of a pair, ordered by the pair's key
            members = [i for i in members if keys[i].endswith("a")]
            count = count // 2
        members.sort(key=lambda i: hashlib.sha256(keys[i].encode()).hexdigest())
        if len(members) < count:
            sys.exit(f"lab: the recipe asks for {count} {name} frames; the pool has {len(members)}")
        for i in members[:count]:
            chosen.append(i)
            if sampler == "pair":
                chosen.append(keys.index(keys[i][:-1] + "b"))
    return chosen


def write_subset(pool_path: Path, indices: list[int], out: Path) -> None:
    from mlffd.data.dataset import open_dataset
    from mlffd.data.writer import DatasetWriter

    pool = open_dataset(pool_path)
    meta = pool.metadata
    if out.exists():
        out.unlink()
    with DatasetWriter(out, meta["teacher_name"], meta["teacher_version"]) as writer:
        for i in sorted(indices):  # pool order keeps a displaced pair's frames next to each other
            f = pool.frame(i)
            writer.append(pool.to_atoms(i), sampler=f["sampler"], temperature=f["temperature"], seed=f["seed"],
                          key=f["key"], energy=f["energy"], forces=f["forces"], stress=f["stress"],
                          atom_energies=f["atom_energies"])


# -- one recipe, one seed ----------------------------------------------------------------------
def run_recipe(system: str, name: str, lab: Path, seed: int, teacher: str, keep: bool) -> dict:
    from mlffd.data.dataset import open_dataset
    from mlffd.export.freeze import export_checkpoint
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer
    from mlffd.validate import validate

    spec = load_recipes(system)
    recipe = spec["recipes"].get(name)
    if recipe is None:
        sys.exit(f"lab: no recipe {name!r} for {system} (has {', '.join(spec['recipes'])})")
    work = lab / "runs" / f"{name}-s{seed}"
    work.mkdir(parents=True, exist_ok=True)
    pool = open_dataset(lab / "pool.h5")
    indices = select_frames(pool, recipe["frames"], spec["structure"])
    write_subset(lab / "pool.h5", indices, work / "train.h5")

    settings = {**recipe.get("train", {}), "seed": seed, "epochs": recipe.get("epochs"),
                "time_budget_minutes": recipe.get("minutes")}
    config = TrainConfig.from_dict(settings)
    started = time.perf_counter()
    trainer = Trainer(str(work / "train.h5"), str(work / "run"), config, [str(lab / "test.h5")])
    summary = trainer.run(quiet=True)
    train_s = time.perf_counter() - started
    model = work / "model.pt"
    meta = export_checkpoint(work / "run", model, dtype="float32")
    started = time.perf_counter()
    report = validate(str(model), teacher, work / "report", system=spec["structure"], data=lab / "test.h5",
                      verbose=False, **VALIDATE)
    validate_s = time.perf_counter() - started

    row = {
        "recipe": name, "seed": seed, "frames": len(indices), "epochs": summary["epochs"],
        "train_minutes": round(train_s / 60.0, 2), "validate_minutes": round(validate_s / 60.0, 2),
        "n_parameters": meta.get("n_parameters"), "teacher_calls": report["teacher_calls"]["calls"],
        "held_out_force_mae": summary[f"test:{lab / 'test.h5'}"]["mae"],
        **table_fields(report["table"]),
        "command": f"python benchmarks/fidelity/lab.py run {system} {name} --dir {lab} --seeds {seed}",
        "date": time.strftime("%Y-%m-%d"),
    }
    row["targets_missed"] = targets_missed(row, spec["targets"])
    (work / "row.json").write_text(json.dumps(row, indent=2))
    if not keep:  # the report stays (plots); the heavy parts go
        shutil.rmtree(work / "run", ignore_errors=True)
        (work / "train.h5").unlink(missing_ok=True)
    return row


def table_fields(table: list[dict]) -> dict:
    """What a row keeps of validate's table: deviations, teacher/student values, MD stability."""
    rows = {r["property"]: r for r in table}
    return {
        "deviations": {k: r["deviation"] for k, r in rows.items() if r["deviation"] is not None},
        "values": {k: [r["teacher"], r["student"]] for k, r in rows.items()
                   if isinstance(r["teacher"], float) and isinstance(r["student"], float)},
        "stable": {k: r["student"] for k, r in rows.items() if k.endswith(": stable")},
        "unstable": [k for k, r in rows.items() if k.endswith(": stable") and r["ok"] is False],
    }


def targets_missed(row: dict, targets: dict) -> list[str]:
    return [k for k, limit in targets.items()
            if k in row["deviations"] and abs(row["deviations"][k]) > limit] + row["unstable"]


def revalidate(system: str, properties: list[str], lab: Path, teacher: str) -> None:
    """Validate's `properties` again on every kept model of the system's rows; their table rows
    replace the row's old ones (other rows stay as measured)."""
    from mlffd.validate import validate

    spec = load_recipes(system)
    path = RESULTS / f"{system}.json"
    rows = json.loads(path.read_text())
    for row in rows:
        work = lab / "runs" / f"{row['recipe']}-s{row['seed']}"
        if not (work / "model.pt").exists():
            print(f"lab: {work} has no model.pt; row kept as measured", flush=True)
            continue
        report = validate(str(work / "model.pt"), teacher, work / "revalidate", system=spec["structure"],
                          verbose=False, **{**VALIDATE, "properties": properties})
        fresh = table_fields(report["table"])
        for key in ("deviations", "values", "stable"):
            row[key] = {**row[key], **fresh[key]}
        row["targets_missed"] = targets_missed(row, spec["targets"])
        row.setdefault("revalidated", {}).update({p: time.strftime("%Y-%m-%d") for p in properties})
        path.write_text(json.dumps(rows, indent=1))
        print(json.dumps({k: row[k] for k in ("recipe", "seed", "targets_missed")}), flush=True)
    render(system)


# -- the table ---------------------------------------------------------------------------------
def append_row(system: str, row: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{system}.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in rows if (r["recipe"], r["seed"]) != (row["recipe"], row["seed"])] + [row]
    path.write_text(json.dumps(rows, indent=1))
    render(system)


def shear_deviation(row: dict) -> float | None:
    """C' = (C11 - C12) / 2 of a cubic crystal, % against the teacher's: the tetragonal shear, which
    in diamond bends bonds without stretching them (to first order)."""
    values = row.get("values", {})
    if "C11" not in values or "C12" not in values:
        return None
    teacher = values["C11"][0] - values["C12"][0]
    return 100.0 * ((values["C11"][1] - values["C12"][1]) / teacher - 1.0)


def _cell(row: dict, names: list, fmt: str, targets: dict) -> str:
    if names == ["C'"]:
        value = shear_deviation(row)
        return "-" if value is None else fmt.format(value)
    for name in names:
        if name in row["deviations"]:
            value = row["deviations"][name]
            limit = targets.get(name)
            text = fmt.format(value)
            return f"**{text}**" if limit is not None and abs(value) <= limit else text
    return "-"


def render(system: str) -> None:
    rows = json.loads((RESULTS / f"{system}.json").read_text())
    spec = load_recipes(system)
    columns, targets = spec["columns"], spec["targets"]
    head = ["recipe", "seed", *[c[0] for c in columns], "MD 2000 K", "missed", "frames", "epochs", "train min"]
    lines = [f"# Fidelity lab: {system} (student against {spec.get('teacher', 'the teacher')})", "",
             "Deviation of the student from the teacher, property by property (validate's table; MD at "
             f"{', '.join(f'{t:g}' for t in VALIDATE['temperatures'])} K). **Bold**: within the target. `missed`: "
             f"target rows missed, of {len(targets)} and MD stability. Targets: {spec['targets_note'].strip()} Rerun a row with its command "
             "(`benchmarks/fidelity/lab.py`, recipes in `benchmarks/fidelity/recipes.yaml`).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = list(spec["recipes"])
    for row in sorted(rows, key=lambda r: (order.index(r["recipe"]) if r["recipe"] in order else 99, r["seed"])):
        md2000 = next((v for k, v in row["stable"].items() if k.startswith("MD 2000")), "-")
        cells = [row["recipe"], str(row["seed"]), *[_cell(row, names, fmt, targets) for _, names, fmt in columns],
                 str(md2000), str(len(row["targets_missed"])), str(row["frames"]), str(row["epochs"]),
                 f"{row['train_minutes']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Recipes:", ""]
    for name, recipe in spec["recipes"].items():
        lines.append(f"- `{name}`: {recipe.get('note', '').strip()}")
    (RESULTS / f"{system}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("pool", "run", "table", "revalidate"):
        q = sub.add_parser(cmd)
        q.add_argument("system")
        if cmd == "run":
            q.add_argument("recipe")
            q.add_argument("--seeds", default="0,1")
            q.add_argument("--keep", action="store_true", help="keep the training run and its data subset")
        if cmd == "revalidate":
            q.add_argument("properties", help="validate's properties to measure again, comma-separated")
        if cmd != "table":
            q.add_argument("--dir", required=True, type=Path, help="lab folder of the system (pool, runs)")
            q.add_argument("--teacher", default="sevennet-0")
    args = p.parse_args(argv)
    if args.cmd == "pool":
        make_pool(args.system, args.dir, args.teacher)
    elif args.cmd == "run":
        for seed in (int(s) for s in args.seeds.split(",")):
            row = run_recipe(args.system, args.recipe, args.dir, seed, args.teacher, args.keep)
            append_row(args.system, row)
            print(json.dumps({k: row[k] for k in ("recipe", "seed", "epochs", "train_minutes", "targets_missed")}),
                  flush=True)
    elif args.cmd == "revalidate":
        revalidate(args.system, args.properties.split(","), args.dir, args.teacher)
    else:
        render(args.system)
    return 0


if __name__ == "__main__":
    sys.exit(main())
