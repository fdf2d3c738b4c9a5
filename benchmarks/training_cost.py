"""Where a training step's time goes (issue 29; numbers in benchmarks/NOTES.md).

    python benchmarks/training_cost.py batch DATA.h5      # ms per frame against batch size
    python benchmarks/training_cost.py threads DATA.h5    # ms per frame with 1 and 2 threads
    python benchmarks/training_cost.py layout DATA.h5     # ms per frame, edges padded per atom (what
                                                          # training does) against the plain edge list,
                                                          # for the presets fast, small and medium
    python benchmarks/training_cost.py step DATA.h5       # ms per frame, the step uncompiled against
                                                          # compiled, for the presets fast and small
    python benchmarks/training_cost.py compile DATA.h5    # `mlffd train` epochs per minute, compile
                                                          # false against true, alternating, per preset
    python benchmarks/training_cost.py trainbatch DATA.h5 # `mlffd train` epochs per minute (compiled)
                                                          # by batch size (--sizes), per preset
    python benchmarks/training_cost.py variants DATA.h5   # `mlffd train` epochs per minute (compiled)
                                                          # and the compile, for preset_cost.py's variants
    python benchmarks/training_cost.py loop DATA.h5       # seconds per compiled epoch, the loop around
                                                          # the step as it was against mlffd train's
    python benchmarks/training_cost.py rebatch DATA.h5    # seconds per compiled epoch, batches built
                                                          # (collated, padded) every epoch, as mlffd train
                                                          # does, against built once, their order shuffled

A step is the loss, its gradient and the AdamW update of `mlffd train` (the distill recipe's loss
settings) on the first frames of DATA (e.g. a distill run's data/train.h5). Two rounds each: this
machine's speed drifts, so read the ratios within a round. `compile` runs `mlffd train` itself
(--epochs, the same settings) and reads metrics.csv: epochs per minute from the fifth epoch on (the
first compiled epochs still trace the odd batch shape), and the compile's one-off cost (metrics.json's
`compile_s`, an empty inductor cache). `loop` alternates epoch by epoch in one process (the drift
cancels): AdamW, clipping and the EMA parameter by parameter with the EMA validated every epoch (the
loop before 51761c6), against `Trainer`'s fused calls with validation every VALIDATE_EVERY-th epoch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from mlffd.training.config import TrainConfig
from mlffd.training.trainer import VALIDATE_EVERY, Trainer, evaluate, update_ema
from preset_cost import VARIANTS  # one list of student shapes for the MD cost and the training cost

LOSS = {"relative_force_floor": 0.2, "stress_weight": 10.0, "energy_weight": 300.0}


def ms_per_frame(data: str, frames: int, padded: bool = True, compiled: bool = False, **settings) -> float:
    config = TrainConfig.from_dict({"epochs": 1, **LOSS, **settings})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(data, tmp, config)
        if not padded:
            trainer.pad_cutoff = None
        if compiled:
            trainer.step.compile(must=True)
        batches = trainer._batches(trainer.train_graphs[:frames], shuffle=False)

        def step(batch):
            trainer.step(batch)
            trainer.optimizer.step()

        for batch in batches[:2]:  # warm-up (and the compile, when compiled): not timed
            step(batch)
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        return (time.perf_counter() - start) / frames * 1e3


def train_epochs(data: str, shape: dict, compile_step: bool, epochs: int) -> tuple[float, float]:
    """`mlffd train` of a student `shape` (a preset, or the settings of one) for `epochs`: (epochs per
    minute from the fifth epoch on, seconds of compiling)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump({**LOSS, **shape, "epochs": epochs, "compile": compile_step}))
        # an empty inductor cache: the compile a user's first run pays
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/inductor"}
        subprocess.run([sys.executable, "-m", "mlffd.cli", "train", data, "--out", f"{tmp}/run", "--config",
                        str(config)], check=True, capture_output=True, env=env)
        with open(f"{tmp}/run/metrics.csv", newline="") as fh:
            elapsed = [float(row["elapsed_s"]) for row in csv.DictReader(fh)]
        compile_s = json.loads(Path(f"{tmp}/run/metrics.json").read_text())["compile_s"]
    return 60.0 * (len(elapsed) - 4) / (elapsed[-1] - elapsed[3]), compile_s


def alternating_epochs(epoch, epochs: int) -> tuple[float, float]:
    """Median seconds of `epoch(arm, k)` for arm False and True, alternating epoch by epoch so that
    the machine's drift cancels, after four untimed epochs (the compile, the first odd batch shapes)."""
    for _ in range(4):
        epoch(True, 1)
    times = {False: [], True: []}
    for k in range(epochs):
        for arm in (False, True):
            times[arm].append(epoch(arm, k))
    return statistics.median(times[False]), statistics.median(times[True])


def loop_seconds(data: str, preset: str, epochs: int) -> tuple[float, float]:
    """Median seconds per compiled epoch: (the loop before 51761c6, mlffd train's), alternating."""
    config = TrainConfig.from_dict({"epochs": 1, **LOSS, "preset": preset, "compile": True})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(data, tmp, config)
        trainer.step.compile(must=True)
        params = list(trainer.model.parameters())
        per_parameter = torch.optim.AdamW(params, lr=1e-4, weight_decay=config.weight_decay)

        def epoch(fused: bool, k: int) -> float:
            start = time.perf_counter()
            for batch in trainer._batches(trainer.train_graphs, shuffle=True, units=trainer.train_units):
                trainer.step(batch).item()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=fused)
                if fused:
                    trainer.optimizer.step()
                    update_ema(trainer.ema, trainer.model, config.ema_decay)
                else:
                    per_parameter.step()
                    with torch.no_grad():
                        for p_ema, p in zip(trainer.ema.parameters(), params):
                            p_ema.mul_(config.ema_decay).add_(p, alpha=1.0 - config.ema_decay)
            if not fused or k % VALIDATE_EVERY == 0:
                evaluate(trainer.ema, trainer.valid_batches)
            return time.perf_counter() - start

        return alternating_epochs(epoch, epochs)


def rebatch_seconds(data: str, preset: str, epochs: int) -> tuple[float, float]:
    """Median seconds per compiled epoch: (batches built every epoch, as `Trainer.run`; built once, only
    their order shuffled), alternating epoch by epoch in one process."""
    config = TrainConfig.from_dict({"epochs": 1, **LOSS, "preset": preset, "compile": True})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(data, tmp, config)
        trainer.step.compile(must=True)
        params = list(trainer.model.parameters())
        fixed = trainer._batches(trainer.train_graphs, shuffle=True, units=trainer.train_units)

        def epoch(once: bool, k: int) -> float:
            start = time.perf_counter()
            batches = ([fixed[i] for i in trainer.rng.permutation(len(fixed))] if once else
                       trainer._batches(trainer.train_graphs, shuffle=True, units=trainer.train_units))
            for batch in batches:
                trainer.step(batch).item()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=True)
                trainer.optimizer.step()
                update_ema(trainer.ema, trainer.model, config.ema_decay)
            if k % VALIDATE_EVERY == 0:
                evaluate(trainer.ema, trainer.valid_batches)
            return time.perf_counter() - start

        return alternating_epochs(epoch, epochs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["batch", "threads", "layout", "step", "compile", "loop", "rebatch", "variants",
                                    "trainbatch"])
    p.add_argument("data", help="an mlffd dataset (e.g. a distill run's data/train.h5)")
    p.add_argument("--frames", type=int, default=192)
    p.add_argument("--epochs", type=int, default=14, help="epochs of each `mlffd train` (compile, trainbatch, variants); of each loop (loop)")
    p.add_argument("--presets", default="fast,small,medium", help="presets of step, compile and loop")
    p.add_argument("--variants", default=",".join(VARIANTS), help="variants (preset_cost.py's names) of variants")
    p.add_argument("--sizes", default="4,8,16", help="frames per batch of trainbatch (the first is the baseline)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if args.what == "variants" and unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    for round_ in range(args.rounds):
        if args.what == "batch":
            for size in (2, 4, 8, 16, 32):
                print(f"round {round_} batch {size}: {ms_per_frame(args.data, args.frames, batch_size=size):.2f} ms per frame")
        elif args.what == "threads":
            for threads in (1, 2):
                print(f"round {round_} threads {threads}: {ms_per_frame(args.data, args.frames, threads=threads):.2f} ms per frame")
        elif args.what == "step":
            for preset in args.presets.split(","):
                times = {flag: ms_per_frame(args.data, args.frames, compiled=flag, preset=preset)
                         for flag in (False, True)}
                print(f"round {round_} {preset}: uncompiled {times[False]:.2f}, compiled {times[True]:.2f} ms per "
                      f"frame ({times[False] / times[True]:.2f}x)", flush=True)
        elif args.what == "compile":
            for preset in args.presets.split(","):
                (eager, _), (compiled, compile_s) = (
                    train_epochs(args.data, {"preset": preset}, flag, args.epochs) for flag in (False, True))
                print(f"round {round_} {preset}: {eager:.1f} epochs per minute uncompiled, {compiled:.1f} "
                      f"compiled ({compiled / eager:.2f}x); compiling cost {compile_s:.0f} s", flush=True)
        elif args.what == "trainbatch":
            sizes = [int(n) for n in args.sizes.split(",")]
            for preset in args.presets.split(","):
                rates = {size: train_epochs(args.data, {"preset": preset, "batch_size": size}, True, args.epochs)[0]
                         for size in sizes}
                print(f"round {round_} {preset}: epochs per minute compiled, by frames per batch: " + ", ".join(
                    f"{size}: {rate:.1f} ({rate / rates[sizes[0]]:.2f}x)" for size, rate in rates.items()), flush=True)
        elif args.what == "variants":
            for name in names:
                rate, compile_s = train_epochs(args.data, VARIANTS[name], True, args.epochs)
                print(f"round {round_} {name}: {rate:.1f} epochs per minute compiled; compiling cost {compile_s:.0f} s",
                      flush=True)
        elif args.what == "loop":
            for preset in args.presets.split(","):
                before, after = loop_seconds(args.data, preset, args.epochs)
                print(f"round {round_} {preset}: {before:.3f} s per epoch with the per-parameter loop, {after:.3f} "
                      f"with mlffd train's ({before / after:.2f}x)", flush=True)
        elif args.what == "rebatch":
            for preset in args.presets.split(","):
                every, once = rebatch_seconds(args.data, preset, args.epochs)
                print(f"round {round_} {preset}: {every:.3f} s per epoch with batches built every epoch, {once:.3f} "
                      f"built once ({every / once:.2f}x)", flush=True)
        else:
            for preset in ("fast", "small", "medium"):
                times = {padded: ms_per_frame(args.data, args.frames, padded=padded, preset=preset)
                         for padded in (False, True)}
                print(f"round {round_} {preset}: edge list {times[False]:.2f}, padded {times[True]:.2f} ms per frame "
                      f"({times[False] / times[True]:.2f}x)")


if __name__ == "__main__":
    main()
