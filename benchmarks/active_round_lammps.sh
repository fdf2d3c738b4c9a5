#!/usr/bin/env bash
# One `mlffd active` round driven by the student's own uncertainty from LAMMPS production MD (issue 31):
#
#     benchmarks/active_round_lammps.sh DISTILL_DIR OUT [TEMPERATURE_K]
#
# DISTILL_DIR is a finished `mlffd distill --system si` folder (model.pt, run/, data/). Its training data
# are copied to OUT (the original stays as it was), then:
# 1. LAMMPS MD of 512 atoms at TEMPERATURE_K (default 2500) with the per-atom uncertainty and a dump
#    (benchmarks/uncertainty_runaway.py);
# 2. round 0 scores the dump's frames by the student's uncertainty and labels, with the teacher, those
#    above its training atoms' largest; round 1 retrains (warm start from DISTILL_DIR/run, 60 epochs) and
#    scores the same frames again;
# 3. the retrained student, exported as distill does (float32, custom ops), through the property suite
#    with distill's validation settings (teacher side from the cache).
set -euxo pipefail
cd "$(dirname "$0")/.."
M=$(realpath "$1")
AL=$(realpath -m "$2")
T=${3:-2500}
mkdir -p "$AL"
[ -f "$AL/train.h5" ] || cp "$M/data/train.h5" "$AL/train.h5"
[ -f "$AL/traj/runaway.json" ] || .venv/bin/python benchmarks/uncertainty_runaway.py "$M/model.pt" --out "$AL/traj" \
    --temperature "$T" --ps 10
.venv/bin/python - "$M" "$AL" <<'PYEOF'
import sys

import yaml

distilled, out = sys.argv[1], sys.argv[2]
config = yaml.safe_load(open(f"{distilled}/run/config.yaml"))
config.update({"epochs": 60, "time_budget_minutes": None, "init_from": f"{distilled}/run", "lr": 0.002})
yaml.safe_dump(config, open(f"{out}/config.yaml", "w"), sort_keys=False)
PYEOF
.venv/bin/mlffd active "$AL/train.h5" --score uncertainty --model "$M/model.pt" \
    --trajectory "$AL/traj/watch/prod.lammpstrj" --rounds 2 --frames-per-round 24 --sample-every 1 \
    --config "$AL/config.yaml" --out "$AL/run"
.venv/bin/mlffd export "$AL/run/round01/member0" -o "$AL/model.pt" --dtype float32
.venv/bin/mlffd validate "$AL/model.pt" --teacher sevennet-0 --system si --data "$M/data/test.h5" \
    --report "$AL/report" --temperatures 1200,2000 --budget 9 --seed 0
