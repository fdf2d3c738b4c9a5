"""Training configuration: one flat record of every setting, stored as config.yaml in the run folder."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from mlffd.errors import MLFFDError
from mlffd.model.registry import DEFAULT_ARCHITECTURE, architectures
from mlffd.model.student import StudentConfig

# Presets trade speed for fidelity (benchmarks/results/frontier.md has the measured points).
PRESETS: dict[str, dict] = {
    "tiny": {"num_interactions": 1, "channels": 8, "lmax": 1, "radial_hidden": 16, "mlp_hidden": 16},
    "fast": {"num_interactions": 1, "channels": 16, "lmax": 2, "radial_hidden": 32, "mlp_hidden": 32},
    "small": {"num_interactions": 2, "channels": 16, "lmax": 2, "radial_hidden": 32, "mlp_hidden": 32},
    "medium": {"num_interactions": 2, "channels": 32, "lmax": 3, "radial_hidden": 64, "mlp_hidden": 64},
}
DEFAULT_PRESET = "fast"
# The student's own defaults for what no preset sets: one owner (mlffd.model.student.StudentConfig).
_STUDENT = {f.name: f.default for f in dataclasses.fields(StudentConfig)}
# The settings TrainConfig hands the architecture's config class (model_settings), by name.
MODEL_KEYS = ("architecture", "cutoff", "num_interactions", "channels", "lmax", "n_radial", "radial_hidden",
              "mlp_hidden", "products", "pair_repulsion")


def _finite_at_least(value, minimum: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= minimum


@dataclass
class TrainConfig:
    # model: a registered architecture (mlffd.model.registry) and, for the default one, its size
    architecture: str = DEFAULT_ARCHITECTURE
    preset: str = DEFAULT_PRESET
    cutoff: float = _STUDENT["cutoff"]
    num_interactions: Optional[int] = None  # None: from the preset
    channels: Optional[int] = None
    lmax: Optional[int] = None
    n_radial: int = _STUDENT["n_radial"]
    radial_hidden: Optional[int] = None
    mlp_hidden: Optional[int] = None
    products: Optional[int] = _STUDENT["products"]  # invariant products per degree; None: channels
    pair_repulsion: bool = _STUDENT["pair_repulsion"]  # a fixed ZBL wall under the energy (mlffd.model.repulsion)
    # optimisation
    epochs: Optional[int] = 200
    # overrides epochs when set; minutes of training epochs (validation included, the one-off compile not)
    time_budget_minutes: Optional[float] = None
    batch_size: int = 4
    lr: float = 5e-3
    min_lr_ratio: float = 0.02
    weight_decay: float = 1e-6
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    energy_weight: float = 1.0
    force_weight: float = 10.0
    stress_weight: float = 1.0
    # Teacher Hessian-vector products from displaced pairs (`mlffd generate --pair-fraction`):
    # weight of mse((dF_student - dF_teacher) / step), eV^2/A^4; 0 switches it off.
    hessian_weight: float = 0.0
    # The teacher's per-atom energies (datasets whose teacher reports them): weight of
    # mse(E_i student - E_i teacher), eV^2, over the atoms that have them; 0 switches it off.
    atom_energy_weight: float = 0.0
    # Loss weight of each frame by the sampler that made it (mlffd.data.sampling.SAMPLERS, e.g.
    # {"elastic": 5, "md": 0.5}); samplers not named weigh 1. Multiplies every term of the frame.
    sampler_weights: dict = field(default_factory=dict)
    # The force term alone, by sampler (multiplies sampler_weights and the relative force weight): e.g.
    # {"relaxed_strain": 0.1} keeps a relaxed cell's energy and stress while its near-zero forces, which
    # relative force errors weigh ~25-60x a hot frame's, stop crowding out the rest.
    sampler_force_weights: dict = field(default_factory=dict)
    # Relative force errors: when set (eV/A), each frame's force term is weighted by
    # (<|F|^2> of the training data + floor^2) / (<|F|^2> of the frame + floor^2), so a near-equilibrium
    # frame's small forces count as much as a hot frame's large ones; None: plain mean squared error.
    relative_force_floor: Optional[float] = None
    # Relative stress errors: when set (GPa), each periodic frame's stress term is weighted by
    # (<sigma^2> of the training data + floor^2) / (<sigma^2> of the frame + floor^2), so a clean 0.3 %
    # strain's stress, whose slope is the elastic constant, counts as much as a hot or compressed cell's.
    relative_stress_floor: Optional[float] = None
    valid_fraction: float = 0.1
    # Warm start: a run folder or checkpoint whose weights and energy statistics the model starts
    # from (active learning retrains each round from the last); the architecture must match.
    init_from: Optional[str] = None
    seed: int = 0
    threads: Optional[int] = None
    # torch.compile the training step (mlffd.training.step: the same numbers, 1.7-2.6x the epochs
    # per minute after a one-off compile of 1-4 minutes): true, false, or null to compile once an
    # epoch shows that more than COMPILE_PAYBACK_S of training is left
    compile: Optional[bool] = None
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)

    def model_settings(self) -> dict:
        """MODEL_KEYS' values, a preset filling what this config leaves None."""
        preset = PRESETS[self.preset]
        settings = {key: getattr(self, key) for key in MODEL_KEYS}
        return {key: preset[key] if value is None and key in preset else value for key, value in settings.items()}

    def validate(self) -> "TrainConfig":
        if self.architecture not in architectures():
            raise MLFFDError(f"unknown architecture {self.architecture!r}; registered: {', '.join(architectures())}")
        if self.preset not in PRESETS:
            raise MLFFDError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.dtype not in ("float32", "float64"):
            raise MLFFDError(f"dtype must be float32 or float64, not {self.dtype!r}")
        if not 0.0 < self.valid_fraction < 1.0:
            raise MLFFDError("valid_fraction must be between 0 and 1")
        if self.epochs is None and self.time_budget_minutes is None:
            raise MLFFDError("give epochs or time_budget_minutes")
        if self.epochs is not None and self.epochs < 1:
            raise MLFFDError(f"epochs must be at least 1, got {self.epochs}")
        if self.time_budget_minutes is not None and not self.time_budget_minutes > 0:
            raise MLFFDError(f"the time budget must be more than 0 minutes, got {self.time_budget_minutes}")
        for key in ("energy_weight", "force_weight", "stress_weight", "hessian_weight", "atom_energy_weight"):
            if not _finite_at_least(getattr(self, key), 0.0):
                raise MLFFDError(f"{key} must be a number >= 0, got {getattr(self, key)!r}")
        for key, unit in (("relative_force_floor", "eV/A"), ("relative_stress_floor", "GPa")):
            floor = getattr(self, key)
            if floor is not None and not (_finite_at_least(floor, 0.0) and floor > 0):
                raise MLFFDError(f"{key} must be a number > 0 ({unit}) or null, got {floor!r}")
        for key in ("sampler_weights", "sampler_force_weights"):
            weights = getattr(self, key)
            if not isinstance(weights, dict):
                raise MLFFDError(f"{key} must map sampler names to weights, got {weights!r}")
            for name, value in weights.items():
                if not _finite_at_least(value, 0.0):
                    raise MLFFDError(f"{key}[{name!r}] must be a number >= 0, got {value!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise MLFFDError(f"compile must be true, false or null, got {self.compile!r}")
        if not isinstance(self.pair_repulsion, bool):
            raise MLFFDError(f"pair_repulsion must be true or false, got {self.pair_repulsion!r}")
        if self.products is not None and not (isinstance(self.products, int) and self.products >= 1):
            raise MLFFDError(f"products must be a whole number >= 1 or null, got {self.products!r}")
        for key in ("cutoff", "lr", "batch_size"):
            if not getattr(self, key) > 0:
                raise MLFFDError(f"{key} must be positive, got {getattr(self, key)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MLFFDError(f"unknown config key {unknown[0]!r} (known keys: {', '.join(sorted(known))})")
        return cls(**data).validate()

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(cls.read(path))

    @staticmethod
    def read(path: str | Path) -> dict:
        """The settings of a YAML/TOML/JSON file, not yet checked: command-line options (a budget,
        a preset) may complete them before `from_dict` does."""
        path = Path(path)
        if not path.is_file():
            raise MLFFDError(f"config file {path} does not exist")
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise MLFFDError(f"config file {path} must hold a mapping of settings")
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
