"""The `sfdet` dispatcher: help, unknown commands, and user errors as one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sfdet import cli
from sfdet.errors import DataError


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_user_error_is_one_line_without_traceback(monkeypatch, capsys):
    class Boom:
        @staticmethod
        def add_arguments(parser):
            pass

        @staticmethod
        def run(args):
            raise DataError("train.csv:12: x1 >= x2 (0.5 >= 0.4)")

    monkeypatch.setattr(cli, "_load", lambda name: Boom)
    assert cli.main(["eval"]) == 2
    err = capsys.readouterr().err
    assert err == "sfdet eval: error: train.csv:12: x1 >= x2 (0.5 >= 0.4)\n"


def test_console_entry_point_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "sfdet", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("sfdet ")


def test_overrides_may_follow_options(monkeypatch):
    """`sfdet train --config X a=1 --no-progress b=2` keeps both overrides; a stray word is still an error."""
    from sfdet.commands import train as train_command

    seen = {}
    monkeypatch.setattr(train_command, "run", lambda args: seen.setdefault("overrides", list(args.overrides)) and 0)
    assert cli.main(["train", "--config", "x.yaml", "a.b=1", "--no-progress", "c.d=2"]) == 0
    assert seen["overrides"] == ["a.b=1", "c.d=2"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--config", "x.yaml", "a.b=1", "--no-progress", "--bogus"])
    assert exc.value.code == 2
