"""Where a training step's time goes (issue 29; numbers in benchmarks/NOTES.md).

    python benchmarks/training_cost.py batch DATA.h5      # ms per frame against batch size
    python benchmarks/training_cost.py threads DATA.h5    # ms per frame with 1 and 2 threads
    python benchmarks/training_cost.py layout DATA.h5     # ms per frame, edges padded per atom (what
                                                          # training does) against the plain edge list,
                                                          # for the presets fast, small and medium

A step is the loss, its gradient and the AdamW update of `mlffd train` (the distill recipe's loss
settings) on the first frames of DATA (e.g. a distill run's data/train.h5). Two rounds each: this
machine's speed drifts, so read the ratios within a round.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from mlffd.training.config import TrainConfig
from mlffd.training.graphs import predict
from mlffd.training.trainer import Trainer, loss_fn

LOSS = {"relative_force_floor": 0.2, "stress_weight": 10.0, "energy_weight": 300.0}


def ms_per_frame(data: str, frames: int, padded: bool = True, **settings) -> float:
    config = TrainConfig.from_dict({"epochs": 1, **LOSS, **settings})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(data, tmp, config)
        if not padded:
            trainer.pad_cutoff = None
        batches = trainer._batches(trainer.train_graphs[:frames], shuffle=False)

        def step(batch):
            loss = loss_fn(predict(trainer.model, batch, create_graph=True), batch, config)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()

        step(batches[0])
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        return (time.perf_counter() - start) / frames * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["batch", "threads", "layout"])
    p.add_argument("data", help="an mlffd dataset (e.g. a distill run's data/train.h5)")
    p.add_argument("--frames", type=int, default=192)
    args = p.parse_args()
    for round_ in range(2):
        if args.what == "batch":
            for size in (2, 4, 8, 16, 32):
                print(f"round {round_} batch {size}: {ms_per_frame(args.data, args.frames, batch_size=size):.2f} ms per frame")
        elif args.what == "threads":
            for threads in (1, 2):
                print(f"round {round_} threads {threads}: {ms_per_frame(args.data, args.frames, threads=threads):.2f} ms per frame")
        else:
            for preset in ("fast", "small", "medium"):
                times = {padded: ms_per_frame(args.data, args.frames, padded=padded, preset=preset)
                         for padded in (False, True)}
                print(f"round {round_} {preset}: edge list {times[False]:.2f}, padded {times[True]:.2f} ms per frame "
                      f"({times[False] / times[True]:.2f}x)")


if __name__ == "__main__":
    main()
