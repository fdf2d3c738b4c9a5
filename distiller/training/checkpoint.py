"""The training checkpoint: what `mlffd train` hands to `mlffd export` and to warm starts (one owner).

A run folder holds two checkpoint files:

    best.pt        the hand-off (`handoff`): the best epoch's EMA weights under "model", the model
                   config and what export records (metrics, teacher, dataset fingerprint, training
                   settings and temperatures; the descriptor statistics once the run has finished)
    checkpoint.pt  the trainer's resumable state of the last epoch (weights, EMA, optimizer, RNGs)

Every reader goes through `read_checkpoint`, which takes a run folder (its best.pt) or either file;
a resumable state reads as its EMA weights, so both files export to the same kind of model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mlffd.errors import MLFFDError

FORMAT = "mlffd-checkpoint"
BEST = "best.pt"
CHECKPOINT = "checkpoint.pt"


def handoff(model_config: dict, weights: dict, *, metrics: dict, teacher: dict, dataset_fingerprint: str,
            train_config: dict, training_temperatures_k: list) -> dict:
    """The best.pt payload: `weights` are the EMA model's state_dict."""
    return {"format": FORMAT, "model_config": model_config, "model": weights, "metrics": metrics,
            "teacher": teacher, "dataset_fingerprint": dataset_fingerprint, "train_config": train_config,
            "training_temperatures_k": training_temperatures_k}


def write_checkpoint(path: str | Path, payload: dict) -> None:
    """Write atomically (a kill leaves the previous file whole)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(source: str | Path) -> dict:
    """A run folder (its best.pt) or a checkpoint file, as the hand-off {model_config, model, ...}."""
    source = Path(source)
    path = source / BEST if source.is_dir() else source
    if not path.is_file():
        raise MLFFDError(f"no checkpoint at {path} (give a run folder of `mlffd train` or a .pt checkpoint)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise MLFFDError(f"{path} is not a readable checkpoint ({type(exc).__name__}); give the run folder of "
                         "`mlffd train` (or its best.pt)") from None
    if not isinstance(payload, dict) or "model_config" not in payload:
        raise MLFFDError(f"{path} is not an mlffd training checkpoint; give the run folder of `mlffd train` "
                         "(or its best.pt)")
    if "ema" in payload:  # the trainer's resumable state: its EMA weights are the model
        payload = dict(payload, model=payload["ema"])
    return payload
