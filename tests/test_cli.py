"""The command line users and scripts rely on: `kotune {sft,dpo,sweep,plan,data,eval,merge,chat,demo}`, each with
--help."""

from __future__ import annotations

import pytest

from kotune.cli import main as kotune

COMMANDS = ["sft", "dpo", "sweep", "plan", "data", "eval", "merge", "chat", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    try:
        code = kotune([command, "--help"])
    except SystemExit as exit_:  # argparse's --help
        code = exit_.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kotune {command}"), out[:200]


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        kotune(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command} " in out or f"    {command}\n" in out, command
