"""Write ``config/densefusion.yaml`` and the README's parameter table from the node's parameter spec.

    python -m tools.render_parameters          # rewrite both
    python -m tools.render_parameters --check  # exit 1 if either differs from the spec

Both are generated from :data:`densefusion_ros.ros.parameters.PARAMETERS`; ``test/test_parameters.py``
keeps them equal to it.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import yaml

from densefusion_ros.ros.parameters import PARAMETERS, Spec, Value

REPO = Path(__file__).resolve().parent.parent
YAML_PATH = REPO / "config" / "densefusion.yaml"
README_PATH = REPO / "README.md"
BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"
YAML_HEADER = """\
# densefusion_node parameters; each is declared with this description (`ros2 param describe /densefusion <name>`).
# Generated from densefusion_ros/ros/parameters.py by `python -m tools.render_parameters`: edit the spec, not this file.
# Keyed /** so that they apply to the node under any name and namespace (robot1/densefusion, ...).
/**:
  ros__parameters:
"""


def yaml_value(value: Value) -> str:
    """``value`` as a YAML scalar that reads back as the same value and type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and yaml.safe_load(value) == value else f"'{value}'"
    return repr(value)


def yaml_text() -> str:
    """``config/densefusion.yaml``: every parameter at its default, its description as the comment above it."""
    lines = [YAML_HEADER.rstrip("\n")]
    for spec in PARAMETERS:
        lines += textwrap.wrap(spec.description, 116, initial_indent="    # ", subsequent_indent="    # ")
        lines.append(f"    {spec.name}: {yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def _limits(spec: Spec) -> str:
    if spec.choices:
        return ", ".join(spec.choices)
    if spec.range is not None:
        return "[{}, {}]".format(*("inf" if v == float("inf") else v for v in spec.range))
    return ""


def _markdown(text: str) -> str:
    """``text`` safe in a table cell: no column breaks, no angle brackets read as HTML tags."""
    return text.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")


def markdown_table() -> str:
    """The README's table: one row per parameter, under its group; "live" = changeable while running."""
    rows = ["| parameter | default | range / choices | live | what it does |", "|---|---|---|---|---|"]
    group = None
    for spec in PARAMETERS:
        if spec.group != group:
            group = spec.group
            rows.append(f"| **{group}** | | | | |")
        default = yaml_value(spec.default)
        rows.append(f"| `{spec.name}` | `{default}` | {_limits(spec)} | {'' if spec.read_only else 'yes'} | "
                    f"{_markdown(spec.description)} |")
    return "\n".join(rows) + "\n"


def readme_text(readme: str) -> str:
    """``readme`` with the text between its parameter markers replaced by :func:`markdown_table`."""
    head, begin, rest = readme.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README.md lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{markdown_table()}{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a file differs from the spec")
    args = parser.parse_args()
    stale = []
    for path, render in ((YAML_PATH, yaml_text), (README_PATH, lambda: readme_text(README_PATH.read_text()))):
        if path.read_text() != (text := render()):
            stale.append(path)
            if not args.check:
                path.write_text(text)
    for path in stale:
        print(f"{path.relative_to(REPO)}: {'differs from' if args.check else 'rewritten from'} the spec")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
