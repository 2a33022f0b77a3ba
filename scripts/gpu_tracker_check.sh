#!/usr/bin/env bash
# The tracking issue's GPU checks in one short run on a lent GPU machine (a few minutes):
#   1. the CUDA tests of the tracker, verification and pipeline;
#   2. track mode and detect mode (icp: verify on every frame) over one held-out 30 Hz sequence on
#      CUDA, and track mode on the machine's CPU with 2 torch threads beside it (the same frames),
#      each with its accuracy and steady-state ms per frame (evaluate --sequence);
#   3. the tracker on CUDA with ICP's step eager and through torch.compile (tools.bench_tracker;
#      design note 'verify: the ICP step through torch.compile').
# Prepare here (the machine has torch, OpenCV and SciPy, not trimesh or pybullet, and no network):
#   python scripts/gpu_tracker_bundle.py          # -> .data/gpu (90 frames of seq_eval scene 0, trimesh, the meshes)
# then run `OUT=$OUT bash scripts/gpu_tracker_check.sh` there with .data/gpu carried.
# Writes $OUT/gpu_tracker_check.log. DEVICE=cpu runs the same steps without a GPU (to try the script).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
BUNDLE=${BUNDLE:-.data/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
export PYTHONPATH="$PWD/$BUNDLE/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_tracker_check.log") 2>&1
t0=$(date +%s)
stamp() { echo "## $(($(date +%s) - t0)) s: $*"; }

stamp "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"

stamp "CUDA tests"
$PY -m pytest -q -p no:cacheprovider test/test_tracking.py test/test_verify.py test/test_pipeline.py test/test_cuda_graphs.py -k "cuda or graphs" 2>&1 | tail -5

W=(--weights models/estimator.pth --refiner models/refiner.pth --segmenter models/segmenter.pth
   --catalog config/objects/demo.yaml --dataset "$BUNDLE/seq" --split seq_gpu --no-progress)
for run in "track $DEVICE 16" "detect $DEVICE 16" "track cpu 2"; do
    set -- $run
    stamp "evaluate --sequence --mode $1 --device $2 --threads $3"
    $PY -m densefusion_ros.cli evaluate --sequence --mode "$1" --device "$2" --threads "$3" "${W[@]}" --out "/tmp/gpu_check/$1_$2" 2>&1 | grep -v '^$'
done
stamp "tracker: ICP step eager, then through torch.compile"
$PY -m tools.bench_tracker "device=$DEVICE" "device=$DEVICE,compile_icp_step=1" --dataset "$BUNDLE/seq" --split seq_gpu --seeds 0 --threads 16
stamp "done"
