"""The CLI offers exactly the vocabulary of edgekit.core.vocab (one definition per concept)."""

from __future__ import annotations

import click
import pytest

from edgekit.core import vocab


def _choices(command: click.Command, option: str):
    param = next(p for p in command.params if option in p.opts)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices), param.default


@pytest.mark.parametrize("option,values", [
    ("--calib-method", vocab.CALIB_METHODS), ("--int8-float-scope", vocab.FLOAT_SCOPES),
    ("--simplifier", vocab.SIMPLIFIERS), ("--target", vocab.TARGETS),
])
def test_export_choices_come_from_the_vocabulary(option, values):
    from edgekit.cli.export_cmd import export
    from edgekit.export.options import ExportOptions

    choices, default = _choices(export, option)
    field = option.lstrip("-").replace("-", "_")
    assert choices == values and default == ExportOptions.model_fields[field].default


@pytest.mark.parametrize("command,option,values", [
    ("check", "--format", ("auto",) + vocab.DATA_FORMATS),
    ("convert", "--from", vocab.CONVERT_SOURCES), ("convert", "--to", vocab.CONVERT_TARGETS),
])
def test_data_choices_come_from_the_vocabulary(command, option, values):
    from edgekit.cli.data_cmd import data
    from edgekit.data.check import FORMATS
    from edgekit.data.convert import SOURCE_FORMATS, TARGET_FORMATS

    assert _choices(data.commands[command], option)[0] == values
    assert (FORMATS, SOURCE_FORMATS, TARGET_FORMATS) == (vocab.DATA_FORMATS, vocab.CONVERT_SOURCES,
                                                         vocab.CONVERT_TARGETS)
