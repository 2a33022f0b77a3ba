#!/usr/bin/env bash
# One GPU session's checks and training, as run on a lent H100/H200 (python3 there holds torch;
# trimesh and the pybullet_data meshes come on PYTHONPATH, the data as a slim BOP copy made by
# scripts/slim_pose_split.py). Writes everything worth keeping to $OUT:
#   tests.log       the CUDA tests (test_cuda_graphs, test_pipeline, test_train_smoke, test_verify, test_tracking: cuda and fp16 paths)
#   bench_cuda.txt  python -m tools.bench_pipeline on CUDA fp32 / fp16, both backbones, 1-8 objects
#                   (batched with CUDA graphs, without them, and the published per-object loop)
#   estimator.pth, refiner.pth (float16), *_log.csv  fine-tuned estimator and a refiner trained on it
# Usage: OUT=out/gpu DATA=.data/slim EST_MIN=5 REF_MIN=2 bash scripts/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
DATA=${DATA:-.data/slim}
RUNS=${RUNS:-/tmp/runs}
EST_MIN=${EST_MIN:-5}
REF_MIN=${REF_MIN:-2}
WORKERS=${WORKERS:-12}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
t0=$(date +%s)
stamp() { echo "## $(($(date +%s) - t0)) s: $*"; }
# float16 storage (as bundled): a float32 estimator is over the 16 MB a returned file may have
bundle() {  # bundle estimator|refiner RUN_DIR
    $PY -c "import sys; from densefusion_ros import models as m; k, src, dst = sys.argv[1:]; \
m.save_checkpoint(dst, getattr(m, 'load_' + k)(src), kind=k, half=True); print(k, '->', dst)" \
        "$1" "$2/$1_best.pth" "$OUT/$1.pth"
}

stamp "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

if [ -z "${SKIP_CHECKS:-}" ]; then
stamp "CUDA tests"
$PY -m pytest -q -p no:cacheprovider test/test_cuda_graphs.py test/test_pipeline.py test/test_train_smoke.py test/test_verify.py test/test_tracking.py \
    -k "cuda or bench_prints or graphs" 2>&1 | tee "$OUT/tests.log" | tail -5

stamp "benchmark"
$PY -m tools.bench_pipeline --devices cuda --objects 1,2,4,5,8 --repeats 10 --warmup 3 2>&1 | tee "$OUT/bench_cuda.txt"

fi
stamp "estimator fine-tuning"
$PY -m densefusion_ros.cli train --stage estimator --dataset "$DATA" --catalog "$DATA/catalog.yaml" --out "$RUNS/est" \
    --init-estimator models/estimator.pth --num-points 250 --batch-size 32 --lr 3e-4 --epoch-samples 16000 \
    --test-samples 300 --preload-crops --max-minutes "$EST_MIN" --workers "$WORKERS" --device "$DEVICE" --no-progress 2>&1 | tail -25
cp "$RUNS/est/train_log.csv" "$OUT/estimator_log.csv"
bundle estimator "$RUNS/est"

stamp "refiner"
$PY -m densefusion_ros.cli train --stage refiner --dataset "$DATA" --catalog "$DATA/catalog.yaml" --out "$RUNS/ref" \
    --init-estimator "$RUNS/est/estimator_best.pth" --num-points 250 --batch-size 32 --lr 1e-3 --epoch-samples 8000 \
    --test-samples 300 --preload-crops --max-minutes "$REF_MIN" --workers "$WORKERS" --device "$DEVICE" --no-progress 2>&1 | tail -15
cp "$RUNS/ref/train_log.csv" "$OUT/refiner_log.csv"
bundle refiner "$RUNS/ref"
stamp "done"
