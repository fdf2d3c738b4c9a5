"""`mlffd train`: fit the student to teacher labels, resumable after a kill.

The run folder holds everything: config.yaml (every setting), checkpoint.pt (latest state with the
optimizer, written atomically every epoch), best.pt (EMA weights with the lowest validation force
MAE among the validated epochs, VALIDATE_EVERY; what `mlffd export` freezes; both files:
mlffd.training.checkpoint), metrics.csv, metrics.json and parity.png.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from tqdm import tqdm

from mlffd.errors import MLFFDError
from mlffd.model.potential import descriptor_distance
from mlffd.model.registry import build_model, make_config
from mlffd.training.checkpoint import BEST, CHECKPOINT, handoff, read_checkpoint, write_checkpoint
from mlffd.training.config import TrainConfig
from mlffd.training.graphs import Graph, collate, pad_edges, predict
from mlffd.training.metrics import force_metrics, frame_metrics, parity_plot
from mlffd.training.runfolder import finite_json, run_folder
from mlffd.training.step import GradientStep
from mlffd.training.trainset import load_training_set

METRIC_FIELDS = ["epoch", "lr", "train_loss", "val_energy_mae_per_atom", "val_force_mae", "val_force_rmse",
                 "val_force_r2", "val_stress_mae", "elapsed_s"]
# The EMA is validated (metrics.csv's val_ columns, best.pt) at the first epoch, every VALIDATE_EVERY-th
# and the last: validating costs ~9 % of a compiled epoch (issue 29), and the best weights of a decaying
# schedule come at its end. By epoch number, so that a resumed run picks the uninterrupted run's best.pt.
VALIDATE_EVERY = 4


def descriptor_statistics(model, batches: List[Graph]) -> Optional[dict]:
    """The training atoms' descriptor mean and precision (inverse covariance, a ridge of 1e-6 of
    the mean variance against near-constant features), from which the frozen model's per-atom
    uncertainty measures, and the quantiles of that uncertainty on the training atoms themselves
    (~1 by construction: a threshold reads against them). None for a student without a descriptor."""
    with torch.no_grad():
        parts = []
        for batch in batches:
            k = int(batch["neighbours_per_atom"]) if "neighbours_per_atom" in batch else 0
            parts.append(model.atom_energy_and_descriptor(batch["edge_vec"], batch["species"], batch["edge_index"],
                                                          k)[1].double())
        x = torch.cat(parts)
        if x.shape[1] == 0 or x.shape[0] <= x.shape[1]:
            return None
        mean = x.mean(0)
        covariance = torch.cov((x - mean).T)
        ridge = 1e-6 * torch.trace(covariance) / len(covariance)
        precision = torch.linalg.inv(covariance + ridge * torch.eye(len(covariance), dtype=torch.float64))
        u = descriptor_distance(x, mean, precision)
    return {"mean": mean, "precision": precision, "training_atoms": int(x.shape[0]),
            "train_quantiles": {"median": float(u.median()), "p99": float(torch.quantile(u, 0.99)),
                                "max": float(u.max())}}


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, every parameter in one call."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def evaluate(model: torch.nn.Module, batches: List[Graph]) -> dict:
    """Metrics (eV, eV/A, eV/A^3) of a model on batched graphs; also returns the raw pairs."""
    pred_f, ref_f, pred_e, ref_e, pred_s, ref_s = [], [], [], [], [], []
    for batch in batches:
        pred = predict(model, batch, create_graph=False)
        n = batch["n_atoms"].double()
        pred_f.append(pred["forces"].detach().double())
        ref_f.append(batch["forces"].double())
        pred_e.append(pred["energy"].detach().double() / n)
        ref_e.append(batch["energy"].double() / n)
        mask = batch["has_stress"]
        if bool(mask.any()):
            volume = batch["volume"][mask].view(-1, 1, 1)
            pred_s.append(-pred["virial"].detach().double()[mask] / volume)
            ref_s.append(-batch["virial"].double()[mask] / volume)
    pairs = {
        "forces": (torch.cat(pred_f).numpy(), torch.cat(ref_f).numpy()),
        "energy_per_atom": (torch.cat(pred_e).numpy(), torch.cat(ref_e).numpy()),
    }
    if pred_s:
        pairs["stress"] = (torch.cat(pred_s).numpy(), torch.cat(ref_s).numpy())
    metrics = force_metrics(*pairs["forces"])
    metrics.update(frame_metrics(pairs))
    return {"metrics": metrics, "pairs": pairs}


class Trainer:
    def __init__(self, data_path: str, out_dir: str, config: TrainConfig, test_paths: Optional[List[str]] = None):
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise MLFFDError(f"run folder {self.out} exists and is not a directory; give a run folder (new or to resume)")
        self.cfg = config.validate()
        self.dtype = torch.float32 if config.dtype == "float32" else torch.float64
        if config.threads:
            torch.set_num_threads(config.threads)
        data = load_training_set(data_path, config, test_paths)
        self.teacher, self.fingerprint, self.elements = data.teacher, data.fingerprint, data.elements
        self.temperatures = data.temperatures
        self.train_graphs, self.train_units = data.train_graphs, data.train_units
        settings = config.model_settings()
        self.model_config = make_config({"elements": self.elements, **settings, **data.statistics})
        warm = self._warm_start_payload(config.init_from, settings) if config.init_from else None
        if warm is not None:  # its energy statistics belong with its weights
            self.model_config = make_config(warm["model_config"])
        torch.manual_seed(config.seed)
        self.model = build_model(self.model_config.to_dict()).to(self.dtype)
        if warm is not None:
            self.model.load_state_dict(warm["model"])
        self.ema = copy.deepcopy(self.model)
        # dense per-atom kernels where the student has them (the same numbers, half the time)
        self.pad_cutoff = settings["cutoff"] if getattr(self.model, "padded_edges", False) else None
        self.valid_batches = self._batches(data.valid_graphs, shuffle=False)
        self.test_batches = {path: self._batches(graphs, shuffle=False) for path, graphs in data.test_graphs.items()}
        self.step = GradientStep(self.model, self.cfg)
        # fused: one kernel per step for all parameters (the per-parameter loop cost ~6 % of a compiled epoch)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                           fused=True)
        self.epoch = 0
        self.elapsed = 0.0
        self.best = {"val_force_mae": math.inf, "epoch": -1}
        self.rng = np.random.default_rng(config.seed)

    def _warm_start_payload(self, source: str, settings: dict) -> dict:
        try:
            payload = read_checkpoint(source)
        except MLFFDError as exc:
            raise MLFFDError(f"init_from: {exc}") from None
        previous = make_config(payload["model_config"]).to_dict()
        changed = [k for k, v in settings.items() if previous.get(k) != v]
        if previous.get("elements") != self.elements or changed:
            what = ", ".join(changed) or "elements"
            raise MLFFDError(f"init_from {source}: its model differs in {what}; warm starts need the same "
                             "architecture")
        return payload

    def _batches(self, graphs: List[Graph], shuffle: bool, units: Optional[List[List[int]]] = None) -> List[Graph]:
        """Batches of about batch_size frames; a unit (a displaced pair) is never split."""
        units = units or [[i] for i in range(len(graphs))]
        order = self.rng.permutation(len(units)) if shuffle else np.arange(len(units))
        chunks, chunk = [], []
        for u in order:
            chunk.extend(units[u])
            if len(chunk) >= self.cfg.batch_size:
                chunks.append(chunk)
                chunk = []
        if chunk:
            chunks.append(chunk)
        batches = []
        for chunk in chunks:
            members = [graphs[i] for i in chunk]
            batch = collate(members, self.dtype)
            pairs = [(k, k + 1) for k in range(len(chunk) - 1) if [chunk[k], chunk[k + 1]] in units]
            if pairs:
                starts = np.cumsum([0] + [len(g["species"]) for g in members])
                batch["pair_a"] = torch.cat([torch.arange(starts[a], starts[a + 1]) for a, _ in pairs])
                batch["pair_b"] = torch.cat([torch.arange(starts[b], starts[b + 1]) for _, b in pairs])
            batches.append(batch if self.pad_cutoff is None else pad_edges(batch, self.pad_cutoff))
        return batches

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "train_config": self.cfg.to_dict(),
            "model_config": self.model_config.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "elapsed": self.elapsed,
            "best": self.best,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "teacher": self.teacher,
            "dataset_fingerprint": self.fingerprint,
        }

    def _save(self, name: str, payload: dict) -> None:
        write_checkpoint(self.out / name, payload)

    def _resume(self) -> bool:
        path = self.out / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["dataset_fingerprint"] != self.fingerprint:
            raise MLFFDError(f"{self.out} holds a run on a different dataset; train into another run folder")
        saved = TrainConfig.from_dict(state["train_config"]).to_dict()
        changed = [k for k, v in self.cfg.to_dict().items() if saved.get(k) != v and k not in ("epochs", "time_budget_minutes", "threads", "compile")]
        if changed:
            raise MLFFDError(f"{self.out} was started with other settings ({', '.join(changed)}); use the same settings or another run folder")
        self.model_config = make_config(state["model_config"])
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.elapsed, self.best = state["epoch"], state["elapsed"], state["best"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        return True

    def export_payload(self, metrics: dict) -> dict:
        return handoff(self.model_config.to_dict(), self.ema.state_dict(), metrics=metrics, teacher=self.teacher,
                       dataset_fingerprint=self.fingerprint, train_config=self.cfg.to_dict(),
                       training_temperatures_k=self.temperatures)

    # -- the loop ----------------------------------------------------------------------------
    def progress(self) -> float:
        if self.cfg.time_budget_minutes is not None:
            return self.elapsed / (60.0 * self.cfg.time_budget_minutes)
        return self.epoch / max(self.cfg.epochs, 1)

    def remaining_s(self, epoch_start: float) -> float:
        """Seconds of training left at the last epoch's pace."""
        if self.cfg.time_budget_minutes is not None:
            return 60.0 * self.cfg.time_budget_minutes - self.elapsed
        return (self.cfg.epochs - self.epoch) * (time.perf_counter() - epoch_start)

    def learning_rate(self) -> float:
        f = min(self.progress(), 1.0)
        warmup = 0.02
        if f < warmup:
            return self.cfg.lr * max(f / warmup, 0.05)
        cosine = 0.5 * (1.0 + math.cos(math.pi * (f - warmup) / (1.0 - warmup)))
        return self.cfg.lr * (self.cfg.min_lr_ratio + (1.0 - self.cfg.min_lr_ratio) * cosine)

    def run(self, quiet: bool = False) -> dict:
        """Train to the end of the schedule (resuming the folder's checkpoint), holding the run
        folder's lock throughout: a second training into the same folder is refused."""
        with run_folder(self.out):
            return self._run(quiet)

    def _run(self, quiet: bool) -> dict:
        resumed = self._resume()
        self.cfg.save(self.out / "config.yaml")
        metrics_csv = self.out / "metrics.csv"
        kept = []
        if resumed and metrics_csv.exists():
            with open(metrics_csv, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= self.epoch]
        with open(metrics_csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        total = self.cfg.epochs if self.cfg.time_budget_minutes is None else None
        if self.cfg.compile:
            self.step.compile(must=True)
        bar = tqdm(total=total, initial=self.epoch, desc="train", unit="epoch", disable=quiet)
        shown = {}  # the last validation's numbers, on the bar
        while self.progress() < 1.0:
            start = time.perf_counter()
            compiled_before = self.step.compile_s
            lr = self.learning_rate()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.model.train()
            losses = []
            for batch in self._batches(self.train_graphs, shuffle=True, units=self.train_units):
                loss = self.step(batch)
                if not torch.isfinite(loss):
                    kept = f"the last good state is in {self.out / CHECKPOINT}" if self.epoch else "no epoch finished"
                    raise MLFFDError(f"loss became {loss.item()} in epoch {self.epoch + 1}; {kept} (try a lower lr)")
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)
                self.optimizer.step()
                update_ema(self.ema, self.model, self.cfg.ema_decay if self.epoch > 0 else 0.0)
                losses.append(loss.item())
            self.epoch += 1
            # the time budget counts training: a cold inductor cache and a warm one train the same minutes
            self.elapsed += time.perf_counter() - start - (self.step.compile_s - compiled_before)
            row = {"epoch": self.epoch, "lr": lr, "train_loss": float(np.mean(losses))}
            validated = self.epoch == 1 or self.epoch % VALIDATE_EVERY == 0 or self.progress() >= 1.0
            if validated:
                validating = time.perf_counter()
                val = evaluate(self.ema, self.valid_batches)["metrics"]
                self.elapsed += time.perf_counter() - validating
                row.update({"val_energy_mae_per_atom": val["energy_mae_per_atom"], "val_force_mae": val["mae"],
                            "val_force_rmse": val["rmse"], "val_force_r2": val["r2"],
                            "val_stress_mae": val.get("stress_mae", float("nan"))})
                shown = {"f_mae": f"{val['mae']:.3f}", "r2": f"{val['r2']:.4f}"}
            row["elapsed_s"] = self.elapsed
            if self.cfg.compile is None:
                self.step.compile_if_worth_it(self.remaining_s(start))
            # Order matters for resume: the metrics row first (rows past the checkpoint are
            # dropped on resume), then best.pt, then the checkpoint that makes the epoch count.
            with open(metrics_csv, "a", newline="") as fh:
                csv.DictWriter(fh, METRIC_FIELDS).writerow(row)
            if validated and val["mae"] < self.best["val_force_mae"]:
                self.best = {"val_force_mae": val["mae"], "epoch": self.epoch}
                self._save(BEST, self.export_payload(val))
            self._save(CHECKPOINT, self._state())
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", **shown)
        bar.close()
        return self.finish()

    def finish(self) -> dict:
        best = read_checkpoint(self.out / BEST)
        model = build_model(best["model_config"]).to(self.dtype)
        model.load_state_dict(best["model"])
        # what the exported model's uncertainty measures against: the training atoms under these weights
        best["descriptor_statistics"] = descriptor_statistics(model, self._batches(self.train_graphs, shuffle=False))
        self._save(BEST, best)
        summary = {"best_epoch": self.best["epoch"], "epochs": self.epoch, "elapsed_s": self.elapsed,
                   "compile_s": self.step.compile_s}
        results = {"validation": evaluate(model, self.valid_batches)}
        for path, batches in self.test_batches.items():
            results[f"test:{path}"] = evaluate(model, batches)
        for name, result in results.items():
            summary[name] = result["metrics"]
        parity_plot({k: v["pairs"] for k, v in results.items()}, self.out / "parity.png")
        summary = finite_json(summary)
        (self.out / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
        return summary
