#!/usr/bin/env bash
# The GPU check: hpo on a GPU machine with JAX (and PyTorch), no TensorFlow, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh --prepare   # here, once: wheels and the IMDB archive into
#                                            # .gpucheck/ (git-ignored), for a machine that
#                                            # can download nothing
#   bash benchmarks/gpu_check.sh             # there, from the repository root (carry .gpucheck)
#   bash benchmarks/gpu_check.sh --dry-run   # here, on the CPU: the same steps, small
#                                            # (PYTHON=... picks the interpreter: one without
#                                            # TensorFlow stands in for the GPU machine)
#
# 1. each text family's default trained for 2 epochs on each backend (seconds per epoch; the
#    first epoch includes compiling), with benchmarks/bench_backends.py;
# 2. the default study on JAX for a few minutes, 2 trials at once on the one GPU;
# 3. its top-5 ensemble, evaluated once on the test set, and hpo predict on the export.
# Everything it prints goes to $OUT/gpu_check.log ($OUT defaults to /tmp/gpu-check), with the
# epochs' and the ensemble's JSON beside it; the study and the ensemble are kept in $WORK
# (/tmp/gpu-check-work), so that $OUT holds only what the device tool brings back. STEPS="2 3"
# runs only those steps.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
here="$PWD/.gpucheck"
OUT="${OUT:-/tmp/gpu-check}"
STEPS="${STEPS:-1 2 3}"
step() { [[ " $STEPS " == *" $1 "* ]]; }

if [ "$mode" = "--prepare" ]; then
    mkdir -p "$here/wheels"
    # What the device's image lacks (its page lists what it has): Keras, Optuna,
    # optuna-dashboard (the ensemble writes its study note with it), KerasTuner and their own
    # needs, as wheels for its Python 3.12 on x86-64.
    for package in keras==3.15.1 namex==0.1.0 optree==0.20.0 optuna==5.0.0 \
        optuna-integration==5.0.0 alembic==1.20.1 Mako==1.4.3 colorlog==6.12.0 \
        SQLAlchemy==2.1.9 keras-tuner==1.4.8 kt-legacy==1.0.5 optuna-dashboard==0.21.0 \
        bottle==0.13.4; do
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d "$here/wheels" "$package"
    done
    cp ../shared/data/aclImdb_v1_labeled.tar.gz "$here/"
    du -sh "$here"
    exit 0
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
started=$(date +%s)
stamp() { echo "== $(( $(date +%s) - started )) s: $*"; }

if [ -d "$here/wheels" ] && [ "$mode" != "--dry-run" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$here"/wheels/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
python="${PYTHON:-python3}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && [ "$mode" = "--dry-run" ]; then
    python=.venv/bin/python
fi
export HPO_IMDB_PATH="${HPO_IMDB_PATH:-$here/aclImdb_v1_labeled.tar.gz}"
[ -f "$HPO_IMDB_PATH" ] || HPO_IMDB_PATH="$(cd .. && pwd)/shared/data/aclImdb_v1_labeled.tar.gz"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader 2>/dev/null \
    || echo "no NVIDIA GPU"
$python - <<'EOF'
import importlib
for name in ("jax", "torch", "keras", "optuna", "tensorflow"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError as exc:
        print(f"{name}: not installed ({exc})")
import jax
print("jax devices:", jax.devices())
EOF

WORK="${WORK:-/tmp/gpu-check-work}"
work="$WORK/studies"
rm -rf "$WORK"  # a fresh study each time: a check, not a search to resume
mkdir -p "$work"
# Each step has a time limit, so that one slow step cannot take the others' time on a lease.
if [ "$mode" = "--dry-run" ]; then
    # The same steps, small: a 500-review subset, and a 3-minute smoke study.
    train_size=500 budget=3m epochs=2 limits=(1200 600 600)
    sed -e 's/^name = .*/name = "gpu-check"/' -e 's/^budget = .*/budget = "3m"/' \
        studies/imdb-smoke.toml > "$work/gpu-check.toml"
else
    train_size=0 budget=3m epochs=2 limits=(200 230 100)
    sed -e 's/^name = .*/name = "gpu-check"/' -e 's/^budget = .*/budget = "3m"/' \
        -e 's/^# max_trial_minutes = 15.*/max_trial_minutes = 2/' \
        studies/imdb.toml > "$work/gpu-check.toml"
fi
sed -i 's/^\[training\]$/[training]\nbackend = "jax"/' "$work/gpu-check.toml"
cp studies/imdb.toml "$work/epochs.toml"

if step 1; then
    stamp "1. each family's default, $epochs epochs, on JAX and PyTorch"
    timeout "${limits[0]}" $python benchmarks/bench_backends.py --study "$work/epochs.toml" \
        --train-size "$train_size" --epochs "$epochs" --backends jax torch \
        --json "$OUT/epochs.json" || echo "epochs: failed or stopped"
fi
if step 2; then
    stamp "2. the default study on JAX, $budget, 2 trials at once per GPU"
    timeout "${limits[1]}" $python -m hpo.search --study "$work/gpu-check.toml" \
        --trials-per-gpu 2 || echo "search: failed or stopped"
    $python -m hpo.status --study "$work/gpu-check.toml" --top 10 || true
fi
if step 3; then
    stamp "3. its top-5 ensemble on the test set, and predict"
    timeout "${limits[2]}" $python -m hpo.ensemble --study "$work/gpu-check.toml" --top 5 \
        --out "$WORK/ensemble" || echo "ensemble: failed"
    $python -m hpo.predict --ensemble "$WORK/ensemble" "A wonderful, moving film." \
        "Dull, predictable and far too long." || echo "predict: failed"
    cp "$WORK/ensemble/report.json" "$OUT/report.json" 2>/dev/null || true
fi
stamp "done"
