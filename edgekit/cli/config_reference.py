"""The config reference (``docs/config.md``), generated from the config models.

``render_config_reference()`` is the single source of the file; a test fails when the committed
file differs from it. Regenerate with::

    python -m edgekit.cli.config_reference docs/config.md
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import click

from edgekit.core.config_doc import model_rows, render_sections, render_table

TITLE = "# Config reference"
INTRO = """Generated from the config models by `python -m edgekit.cli.config_reference docs/config.md`
(a test checks this file matches them). Every key is strict: an unknown key fails by name with the
closest valid one."""

TRAIN_INTRO = """`edgekit train obb [--config FILE] key=value ...` (`edgekit.train.obb.ObbTrainConfig`).
Priority: `key=value` on the command line > the `--config` YAML/JSON file > the defaults below.
Nested keys are dotted (`teacher.imgsz=320`); a stage is addressed by name or index
(`stages.a.epochs=5`, `stages.0.epochs=5`). `edgekit train obb --print-config ...` prints the resolved
config; the run saves it as `reports/config_resolved.yaml`."""

STAGE_INTRO = """Each entry of `stages` (trained in order; stage A with the backbone frozen, then stage B):"""

EXPORT_INTRO = """`edgekit export SOURCE [flags]` (`edgekit.export.ExportOptions`). The flag sets the field of the
same meaning; fields without a flag are set only through the Python API (`ExportOptions(...)`)."""


def _train_section() -> str:
    from edgekit.train.obb.config import ObbTrainConfig, StageConfig, _default_stages

    stages = ", ".join(f"`{s.name}` ({s.epochs} epochs, freeze {s.freeze}, lr0 {s.lr0})" for s in _default_stages())
    return "\n\n".join([
        TRAIN_INTRO, render_table(model_rows(ObbTrainConfig)),
        f"{STAGE_INTRO} default {stages}.",
        render_table(model_rows(StageConfig, "stages.<name>.")),
    ])


def _export_section() -> str:
    from edgekit.export.options import ExportOptions

    from .export_cmd import FIELD_FLAGS, export

    helps = {opt: p.help for p in export.params if isinstance(p, click.Option) and p.help for opt in p.opts}

    def key_name(dotted: str, field: str) -> str:
        flag = FIELD_FLAGS.get(dotted)
        return f"`{flag}` (`{dotted}`)" if flag else f"`{dotted}` (API only)"

    rows = []
    for key, kind, default, meaning in model_rows(ExportOptions, key_name=key_name):
        flag = key.split("`")[1]
        help_text = helps.get(flag, "")
        rows.append((key, kind, default, help_text or meaning))  # the --help text the user already knows
    return "\n\n".join([EXPORT_INTRO, render_table(rows, ("Flag (field)", "Type", "Default", "Meaning"))])


def render_config_reference() -> str:
    """The whole of ``docs/config.md`` as Markdown."""
    body = render_sections({"train obb": _train_section(), "export": _export_section()})
    return f"{TITLE}\n\n{INTRO}\n\n{body}"


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    text = render_config_reference()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":  # pragma: no cover
    main()
