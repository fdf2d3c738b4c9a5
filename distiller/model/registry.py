"""Student architectures by name. A checkpoint's `model_config` names its architecture, so training,
warm starts, export and `mlffd info` build any registered student the same way:

    @register_architecture("my-student", MyConfig)       # one line next to the class
    class MyStudent(nn.Module): ...

    model = build_model(payload["model_config"])

A student follows the frozen-model contract (docs/artifact.md): `forward(...)` returns energy,
atom_energy, forces, virial and atom_virial; `atom_energy(edge_vec, species, edge_index)` gives the
per-node energies training differentiates (and, optionally, `atom_energy_padded` for training's padded
edge layout: see mlffd.model.potential.EdgePotential); `config` has `elements`, `cutoff`, `num_interactions` and
`to_dict()`. The config class takes the settings of TrainConfig.model_settings() and the fitted
statistics (atomic_energies, energy_scale, avg_num_neighbors) and ignores what it has no field for.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from torch import nn

from mlffd.errors import MLFFDError

# checkpoints written before architectures had names are all this one
DEFAULT_ARCHITECTURE = "scalar-mace"

_ARCHITECTURES: dict[str, tuple[type, type]] = {}


def register_architecture(name: str, config_class: type) -> Callable[[type], type]:
    """Class decorator: make `cls` buildable from a model_config whose "architecture" is `name`."""

    def register(cls: type) -> type:
        _ARCHITECTURES[name] = (cls, config_class)
        return cls

    return register


def _load_builtin() -> None:
    import mlffd.model.student  # noqa: F401  (registers the built-in architecture)


def architectures() -> list[str]:
    _load_builtin()
    return sorted(_ARCHITECTURES)


def make_config(model_config: dict):
    """The architecture's config object for a model_config dict (its "architecture" key included)."""
    _load_builtin()
    name = model_config.get("architecture", DEFAULT_ARCHITECTURE)
    if name not in _ARCHITECTURES:
        raise MLFFDError(f"unknown student architecture {name!r}; registered: {', '.join(architectures())}")
    _, config_class = _ARCHITECTURES[name]
    fields = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in dict(model_config, architecture=name).items() if k in fields})


def build_model(model_config: dict) -> nn.Module:
    """A freshly initialised student of the architecture `model_config` names."""
    config = make_config(model_config)
    cls, _ = _ARCHITECTURES[config.architecture]
    return cls(config)
