"""The ``densefusion-ros`` command: ``infer``, ``synth``, ``train``, ``evaluate``.

Each sub-command lives in its own module, which exposes ``configure_parser(parser)`` and
``run(args) -> int``. Modules are imported only when their sub-command runs, so that
``densefusion-ros synth --help`` does not pay for importing torch. ``train`` and ``evaluate``
turn the parsed options into their typed settings first
(:meth:`~densefusion_ros.train.config.TrainConfig.from_args`,
:meth:`~densefusion_ros.eval.evaluate.EvalConfig.from_args`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "infer": ("densefusion_ros.infer", "estimate poses on one RGB-D frame or a BOP scene"),
    "synth": ("densefusion_ros.data.synth", "render a synthetic BOP dataset with pybullet"),
    "train": ("densefusion_ros.train.trainer", "train the segmenter, estimator or refiner"),
    "evaluate": ("densefusion_ros.eval.evaluate", "measure ADD, ADD-S and AUC on a dataset"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the top-level parser; only the chosen sub-command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="densefusion-ros", description="DenseFusion 6D pose estimation: inference, synthetic data, training, evaluation."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).configure_parser(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
