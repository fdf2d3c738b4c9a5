"""Fidelity lab experiment: does a second-order polish of a trained student move the property table?

Takes a lab run kept with `lab.py run ... --keep` (its training folder and data subset), runs
full-batch L-BFGS (strong Wolfe line search) on the same loss `mlffd train` minimises, for a fixed
number of loss evaluations (each costs about one epoch), keeps the weights with the lowest
validation force MAE, exports them (float32) and validates them like a lab row. Prints the
training loss and validation errors per step and writes `polish-<evaluations>.json` beside the run.

    python benchmarks/fidelity/lab.py run si products64 --dir lab/si --seeds 0 --keep
    python benchmarks/fidelity/polish.py si lab/si/runs/products64-s0 --evaluations 150 --dir lab/si
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import lab


def polish(system: str, work: Path, evaluations: int, lab_dir: Path, teacher: str) -> dict:
    from mlffd.export.freeze import export_checkpoint
    from mlffd.training.config import TrainConfig
    from mlffd.training.graphs import predict
    from mlffd.training.checkpoint import BEST, read_checkpoint
    from mlffd.training.step import loss_fn
    from mlffd.training.trainer import Trainer, evaluate
    from mlffd.validate import validate

    spec = lab.load_recipes(system)
    cfg = TrainConfig.load(work / "run" / "config.yaml")
    out = work / f"polish-{evaluations}"
    trainer = Trainer(str(work / "train.h5"), str(out), cfg, [str(lab_dir / "test.h5")])
    start_payload = read_checkpoint(work / "run")
    model = trainer.model
    model.load_state_dict(start_payload["model"])
    batches = trainer._batches(trainer.train_graphs, shuffle=False, units=trainer.train_units)
    n_frames = sum(len(b["n_atoms"]) for b in batches)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=10, history_size=50,
                                  line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)
    count = [0]

    def closure():  # the full training split: the batch losses weighted by frames
        optimizer.zero_grad()
        total = 0.0
        for batch in batches:
            loss = loss_fn(predict(model, batch, create_graph=True), batch, cfg) * (len(batch["n_atoms"]) / n_frames)
            loss.backward()
            total += loss.item()
        count[0] += 1
        return torch.tensor(total)

    history = []
    started = time.perf_counter()

    def record(loss: float) -> float:
        val = evaluate(model, trainer.valid_batches)["metrics"]
        history.append({"evaluations": count[0], "seconds": round(time.perf_counter() - started, 1), "train_loss": loss,
                        "val_force_mae": val["mae"], "val_energy_mae_per_atom": val["energy_mae_per_atom"]})
        print(json.dumps(history[-1]), flush=True)
        return val["mae"]

    best = record(float(closure()))
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    while count[0] < evaluations:
        mae = record(float(optimizer.step(closure)))
        if mae < best:
            best, best_state = mae, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    trainer.ema = model
    out.mkdir(exist_ok=True)
    trainer._save(BEST, trainer.export_payload(evaluate(model, trainer.valid_batches)["metrics"]))
    exported = work / f"model-polish-{evaluations}.pt"
    export_checkpoint(out, exported, dtype="float32")
    report = validate(str(exported), teacher, work / f"report-polish-{evaluations}", system=spec["structure"],
                      data=lab_dir / "test.h5", verbose=False, **lab.VALIDATE)
    result = {
        "run": str(work), "evaluations": evaluations, "history": history,
        "deviations": {r["property"]: r["deviation"] for r in report["table"] if r["deviation"] is not None},
        "stable": {r["property"]: r["student"] for r in report["table"] if r["property"].endswith(": stable")},
    }
    (work / f"polish-{evaluations}.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system")
    p.add_argument("run", type=Path, help="a lab run folder kept with --keep (holds run/ and train.h5)")
    p.add_argument("--evaluations", type=int, default=150, help="full-batch loss evaluations (about one epoch each)")
    p.add_argument("--dir", type=Path, required=True, help="the lab folder (its test.h5)")
    p.add_argument("--teacher", default="sevennet-0")
    args = p.parse_args(argv)
    result = polish(args.system, args.run, args.evaluations, args.dir, args.teacher)
    print(json.dumps(result["deviations"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
