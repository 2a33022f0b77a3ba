"""Start/stop benchmark: start the node, wait until ready, signal it, check it exits cleanly within 2 s.

    python -m tools.bench_startstop --cycles 100

Signals alternate SIGTERM / SIGINT (``--signal`` picks one). While the cycles run, a publisher
process streams the synthetic RGB-D scene (``--rate``, 0 = none), so that most signals arrive
while a frame is being processed. A cycle fails when the node does not become ready, exits after
``--budget`` seconds, exits non-zero, or prints a Traceback. Uses random-weight compact networks
unless ``--bundled``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tools.bench_soak import wait_ready


def cycle(cmd: list[str], env: dict[str, str], sig: int, hold: float, budget: float) -> dict:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, *cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = wait_ready(proc, timeout=180.0)
    except RuntimeError as e:
        proc.kill()
        proc.wait()
        return {"ok": False, "why": "not ready", "detail": str(e)[-2000:]}
    ready_s = time.monotonic() - t0
    time.sleep(hold)
    t1 = time.monotonic()
    proc.send_signal(sig)
    try:
        rest, _ = proc.communicate(timeout=budget + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    exit_s = time.monotonic() - t1
    out = "".join(lines) + rest
    why = ("exit code %s" % proc.returncode if proc.returncode != 0 else "slow exit" if exit_s > budget
           else "Traceback" if "Traceback" in out else "")
    return {"ok": not why, "why": why, "signal": signal.Signals(sig).name, "ready_s": round(ready_s, 2), "exit_s": round(exit_s, 3),
            "detail": out[-2000:] if why else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--signal", choices=["INT", "TERM", "both"], default="both")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds allowed from signal to exit")
    parser.add_argument("--hold", type=float, default=1.0, help="longest random wait between ready and the signal, seconds")
    parser.add_argument("--rate", type=float, default=15.0, help="input stream during the cycles, Hz (0 = none)")
    parser.add_argument("--bundled", action="store_true")
    parser.add_argument("--models", help="folder for / from synthetic.make_random_models")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args(argv)

    from densefusion_ros.ros.env import apply_local_ros_env
    from tools import synthetic

    domain = os.environ.get("ROS_DOMAIN_ID")
    apply_local_ros_env(domain_id=int(domain) if domain else None, log_dir=os.environ.get("ROS_LOG_DIR"))
    env = dict(os.environ)
    if args.bundled:
        cmd = ["-m", "densefusion_ros.ros.node", "--ros-args", "-p", "device:=cpu"]
    else:
        folder = Path(args.models or tempfile.mkdtemp(prefix="densefusion_startstop_"))
        models = synthetic.make_random_models(folder) if not (folder / "est.pth").is_file() else {
            "estimator": folder / "est.pth", "refiner": folder / "ref.pth", "catalog": folder / "catalog.yaml"}
        cmd = synthetic.node_command(models, "device:=cpu")
    stream = None
    if args.rate > 0:
        stream = subprocess.Popen([sys.executable, "-m", "tools.bench_soak", "--publish", "--rate", str(args.rate),
                                   "--size", "320x240", "--seconds", "1e9"], env=env, stdout=subprocess.DEVNULL)
    sigs = {"INT": [signal.SIGINT], "TERM": [signal.SIGTERM], "both": [signal.SIGTERM, signal.SIGINT]}[args.signal]
    rng = random.Random(0)
    results = []
    try:
        for k in range(args.cycles):
            r = cycle(cmd, env, sigs[k % len(sigs)], rng.uniform(0.0, args.hold), args.budget)
            results.append(r)
            print(f"cycle {k + 1}/{args.cycles}: {'ok' if r['ok'] else 'FAILED ' + r['why']} "
                  f"{r.get('signal', '')} ready {r.get('ready_s', '-')} s, exit {r.get('exit_s', '-')} s", flush=True)
    finally:
        if stream is not None:
            stream.terminate()
            stream.wait(timeout=10)
    exits = [r["exit_s"] for r in results if "exit_s" in r]
    summary = {
        "cycles": len(results), "failures": sum(not r["ok"] for r in results),
        "failure reasons": sorted({r["why"] for r in results if not r["ok"]}),
        "ready s (p50, max)": [round(float(np.median([r["ready_s"] for r in results if "ready_s" in r])), 2),
                               max((r["ready_s"] for r in results if "ready_s" in r), default=None)],
        "exit s (p50, p95, max)": [round(float(np.percentile(exits, q)), 3) for q in (50, 95, 100)] if exits else None,
        "budget s": args.budget, "input stream Hz": args.rate,
        "failed details": [r["detail"] for r in results if not r["ok"]][:3],
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "cycles": results}, indent=1))
    return 0 if summary["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
