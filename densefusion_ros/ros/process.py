"""Process-level concerns of the node: loading with clear errors, device choice, signals, exit code.

* :func:`load_pipeline` reads the catalog and each network file; any problem becomes one
  :class:`StartupError` naming the parameter, the file and the layout that was expected.
* :func:`choose_device`: a CUDA device that is absent falls back to the CPU with a warning, or
  fails start-up when ``device_strict`` is set.
* :func:`run`: ``rclpy.init`` without rclpy's signal handlers; SIGINT and SIGTERM both stop the
  spin loop, the node's worker and the executor, and the process exits 0 (within about a
  second); a signal during start-up exits 0 as well. A :class:`StartupError` exits 2.
  :func:`exit_now` then skips the interpreter teardown, which is slow with torch loaded on a busy
  CPU (docs/node_internals.md, "Exit without teardown").
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from densefusion_ros.catalog import Catalog
from densefusion_ros.pipeline import Pipeline
from densefusion_ros.resources import share_path
from densefusion_ros.ros import parameters
from densefusion_ros.runtime import resolve_device

EXIT_STARTUP_ERROR = 2

# What each weights parameter must point to (named in start-up errors).
LAYOUTS = {
    "estimator": "a DenseFusion estimator (PoseNet): the published pose_model_*.pth state_dict, or a densefusion_ros "
                 "checkpoint of kind 'estimator' (densefusion-ros train --stage estimator)",
    "refiner": "a DenseFusion refiner (PoseRefineNet): the published pose_refine_model_*.pth state_dict, or a "
               "densefusion_ros checkpoint of kind 'refiner'; 'none' runs without refinement",
    "segmenter": "a segmentation network: the published vanilla_segmentation model_*.pth state_dict, or a "
                 "densefusion_ros checkpoint of kind 'segmenter'; or set label_topic instead",
}


class StartupError(RuntimeError):
    """The node cannot start; the text names the parameter, the file and what was expected."""


def _path(p: Callable[[str], Any], param: str, default: Path) -> Path | None:
    """The file a path parameter names: '' = the bundled ``default`` if present, 'none' = None."""
    value = str(p(param))
    if value == "none":
        return None
    if value:
        return Path(value).expanduser()
    return default if default.is_file() else None


def choose_device(p: Callable[[str], Any], logger: Any) -> str:
    """The torch device to use, from the ``device``, ``device_strict`` and ``torch_threads`` parameters."""
    import torch

    if p("torch_threads") > 0:
        torch.set_num_threads(p("torch_threads"))
    device = str(p("device"))
    if not device.startswith("cuda"):
        try:
            return str(resolve_device(device))
        except RuntimeError:
            raise StartupError(f"device '{device}' is not auto, cpu or cuda:N") from None
    try:
        index = int(device.split(":")[1]) if ":" in device else 0
    except ValueError:
        raise StartupError(f"device '{device}' is not auto, cpu or cuda:N") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index < count:
        return device
    if p("device_strict"):
        raise StartupError(f"device '{device}' requested with device_strict, but this machine has {count} CUDA device(s)")
    logger.warning(f"device '{device}' is not available ({count} CUDA device(s)); running on the CPU")
    return "cpu"


def _load_network(kind: str, param: str, path: Path, device: str) -> Any:
    from densefusion_ros import models

    loader = {"estimator": models.load_estimator, "refiner": models.load_refiner, "segmenter": models.load_segmenter}[kind]
    if not path.is_file():
        raise StartupError(f"{param}: {path} does not exist; expected {LAYOUTS[kind]}")
    try:
        return loader(path, device=device)
    except models.CheckpointError as e:
        raise StartupError(f"{param}: {e} Expected {LAYOUTS[kind]}.") from None
    except Exception as e:  # noqa: BLE001 - torch.load on a file that is no checkpoint raises many kinds
        raise StartupError(f"{param}: {path} is not a readable checkpoint ({type(e).__name__}: {e}); expected {LAYOUTS[kind]}") from None


def load_pipeline(p: Callable[[str], Any], logger: Any) -> tuple[Catalog, Pipeline]:
    """Catalog and pipeline from the node's parameters; raises :class:`StartupError`."""
    catalog_path = _path(p, "catalog", share_path("config", "objects", "demo.yaml"))
    estimator = _path(p, "estimator_weights", share_path("models", "estimator.pth"))
    if catalog_path is None or estimator is None:
        param = "catalog" if catalog_path is None else "estimator_weights"
        raise StartupError(f"no {param.replace('_', ' ')} bundled: set the '{param}' parameter"
                           + ("" if catalog_path is None else f" to {LAYOUTS['estimator']}"))
    if not catalog_path.is_file():
        raise StartupError(f"catalog: {catalog_path} does not exist; expected an object catalog YAML (objects: [...])")
    try:
        catalog = Catalog.load(catalog_path)
    except Exception as e:  # noqa: BLE001 - YAML, missing meshes, wrong fields
        raise StartupError(f"catalog: {catalog_path} cannot be read ({type(e).__name__}: {e})") from None
    device = choose_device(p, logger)
    files = {"estimator": ("estimator_weights", estimator),
             "refiner": ("refiner_weights", _path(p, "refiner_weights", share_path("models", "refiner.pth"))),
             "segmenter": ("segmenter_weights", None if p("label_topic") else _path(p, "segmenter_weights", share_path("models", "segmenter.pth")))}
    nets = {kind: _load_network(kind, param, path, device) if path is not None else None for kind, (param, path) in files.items()}
    config = parameters.pipeline_config(p, device=device)
    try:
        pipeline = Pipeline(nets["estimator"], catalog, config, refiner=nets["refiner"], segmenter=nets["segmenter"])
    except ValueError as e:  # e.g. the catalog's object indices do not fit the estimator
        raise StartupError(f"estimator_weights {estimator} and catalog {catalog_path} do not fit: {e}") from None
    return catalog, pipeline


class Interrupted(Exception):
    """SIGINT or SIGTERM before the node was ready."""


class _Signals:
    """SIGINT/SIGTERM handler: during start-up it aborts (raises), afterwards it only records the signal."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.spinning = False

    def __call__(self, signum: int, _frame: Any) -> None:
        self.received = signum
        if not self.spinning:
            raise Interrupted(signal.Signals(signum).name)


def run(make_node: Callable[[], Node], args: list[str] | None = None, name: str = "densefusion") -> int:
    """Create the node and spin it until SIGINT or SIGTERM; returns the process exit code.

    rclpy's own handlers are not installed: they only wake the executor for SIGINT in some
    versions and leave SIGTERM to the default action. Here both signals set a flag that the spin
    loop checks every 0.1 s, and the same orderly shutdown follows (worker, executor, node, rclpy).
    """
    signals = _Signals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = {s: signal.signal(s, signals) for s in (signal.SIGINT, signal.SIGTERM)}
    logger = rclpy.logging.get_logger(name)
    node, executor = None, None
    try:
        node = make_node()
        make_executor = getattr(node, "create_executor", None)
        executor = make_executor() if make_executor is not None else MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        signals.spinning = True
        while signals.received is None and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
        if signals.received is not None:
            logger.info(f"{signal.Signals(signals.received).name} received: shutting down")
        return 0
    except Interrupted as e:
        logger.info(f"{e} during start-up: exiting")
        return 0
    except StartupError as e:
        logger.fatal(f"cannot start: {e}")
        return EXIT_STARTUP_ERROR
    finally:
        signals.spinning = True  # a second signal during shutdown must not raise
        if node is not None:
            getattr(node, "shutdown", lambda: None)()
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        rclpy.try_shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` after :func:`run`: run atexit handlers, flush, skip the teardown."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
