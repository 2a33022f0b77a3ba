#!/usr/bin/env bash
# Rebuild everything the demo bundles, with this project's own tools, from nothing:
# synthetic data -> segmenter, estimator, refiner -> held-out evaluation -> demo rosbag.
# On the 2-core CPU machine this took about 2 hours (see models/README.md). The bundled estimator
# and refiner then went one step further on a GPU (GPU=1 below, as scripts/gpu_session.sh ran it
# on a lent H200 with a slim copy of the train split): the CPU estimator fine-tuned for 5 minutes,
# and a refiner trained for 2 minutes on the result. Outputs: models/*.pth, models/README.md
# numbers (by hand), data/demo_sequence/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=${DATA:-.data/demo}
RUNS=${RUNS:-.data/runs}
DEVICE=${DEVICE:-cpu}
GPU=${GPU:-0}
CAT=config/objects/demo.yaml

# 1. Data: train (seed 1, 160 scenes x 10 views), test for model selection (seed 1000),
#    eval for the model card (seed 3000, never used in training or selection), and the demo sequence:
#    one 30 Hz video (seed 2100; 64 frames fit the bag's ~12 MB: lossless noisy depth is ~165 kB a frame).
$PY -m densefusion_ros.cli synth --objects $CAT --out $DATA --split train --scenes 60 --frames-per-scene 10 --seed 1 --quiet
$PY -m densefusion_ros.cli synth --objects $CAT --out $DATA --split train --scenes 100 --scene-offset 60 --frames-per-scene 10 --seed 1 --quiet
$PY -m densefusion_ros.cli synth --objects $CAT --out $DATA --split test --scenes 8 --frames-per-scene 10 --seed 1000 --quiet
$PY -m densefusion_ros.cli synth --objects $CAT --out $DATA --split eval --scenes 10 --frames-per-scene 10 --seed 3000 --quiet
$PY -m densefusion_ros.cli synth --objects $CAT --out $DATA --split demo --sequence --scenes 1 --frames-per-scene 64 --seed 2100 --quiet

# 2. Networks (the two first run side by side, one core each).
$PY -m densefusion_ros.cli train --stage segmenter --dataset $DATA --catalog $CAT --out $RUNS/seg --seg-scale 0.5 \
    --lr 1e-3 --max-minutes 40 --threads 1 --workers 0 --test-samples 40 --device $DEVICE --no-progress &
$PY -m densefusion_ros.cli train --stage estimator --dataset $DATA --catalog $CAT --out $RUNS/est --backbone compact \
    --num-points 250 --lr 3e-4 --epoch-samples 1200 --max-minutes 55 --threads 1 --workers 0 --test-samples 150 \
    --device $DEVICE --no-progress
wait
$PY -m densefusion_ros.cli train --stage refiner --dataset $DATA --catalog $CAT --out $RUNS/ref \
    --init-estimator $RUNS/est/estimator_best.pth --num-points 250 --epoch-samples 1200 --max-minutes 25 \
    --threads 2 --workers 0 --test-samples 150 --device $DEVICE --no-progress
if [ "$GPU" = 1 ]; then  # the GPU step of the bundled weights (replaces the CPU refiner)
    $PY -m densefusion_ros.cli train --stage estimator --dataset $DATA --catalog $CAT --out $RUNS/est_gpu \
        --init-estimator $RUNS/est/estimator_best.pth --num-points 250 --batch-size 32 --lr 3e-4 --epoch-samples 16000 \
        --test-samples 300 --preload-crops --max-minutes 5.2 --workers 14 --device cuda --no-progress
    $PY -m densefusion_ros.cli train --stage refiner --dataset $DATA --catalog $CAT --out $RUNS/ref \
        --init-estimator $RUNS/est_gpu/estimator_best.pth --num-points 250 --batch-size 32 --lr 1e-3 --epoch-samples 8000 \
        --test-samples 300 --preload-crops --max-minutes 2 --workers 14 --device cuda --no-progress
    cp $RUNS/est_gpu/estimator_best.pth $RUNS/est/estimator_best.pth
fi
# Bundle with float16 storage (half the size; loaded back as float32).
$PY - "$RUNS" <<'PY'
import sys
from densefusion_ros import models
runs = sys.argv[1]
for kind, load in (("estimator", models.load_estimator), ("refiner", models.load_refiner), ("segmenter", models.load_segmenter)):
    src = {"estimator": "est", "refiner": "ref", "segmenter": "seg"}[kind]
    models.save_checkpoint(f"models/{kind}.pth", load(f"{runs}/{src}/{kind}_best.pth"), kind=kind, half=True)
PY

# 3. Held-out evaluation with masks from the segmentation network (numbers for models/README.md).
$PY -m densefusion_ros.cli evaluate --dataset $DATA --split eval --weights models/estimator.pth \
    --refiner models/refiner.pth --segmenter models/segmenter.pth --masks segmenter --icp --out out/eval_segmenter
$PY -m densefusion_ros.cli evaluate --dataset $DATA --split eval --weights models/estimator.pth \
    --refiner models/refiner.pth --masks gt --out out/eval_gt_masks

# 4. The demo sequence: the demo video as a compressed rosbag2 with ground truth, stamped with the video's own
#    30 Hz stamps (--rate 0), colour JPEG quality 80, depth lossless PNG: 11.7 MB.
rm -rf data/demo_sequence
$PY -m densefusion_ros.apps.bag --dataset $DATA --split demo --catalog $CAT --out data/demo_sequence --rate 0 --jpeg-quality 80
