"""One ``calcidet`` logger: stderr, once, ``-q``/``-v`` levels, rank zero only under DDP.

    .venv/bin/python -m pytest tests/test_logging.py -q
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytorch_lightning.utilities import rank_zero_only

from calcidet.data.synth import synthesize
from calcidet.train.cli import main, take_verbosity
from calcidet.train.logs import current_rank, setup_logging

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
TINY_SYNTH = ["--n", "2", "--seed", "3", "--workers", "1", "--dicom-fraction", "0",
              "--min-size", "64", "--max-size", "64"]


@pytest.fixture(autouse=True)
def _fresh_logger(monkeypatch) -> Iterator[logging.Logger]:
    """The ``calcidet`` logger as no command has set it up, put back afterwards for the other tests."""
    monkeypatch.setattr(sys, "argv", ["calcidet"])  # LightningCLI warns when given args while sys.argv holds pytest's
    logger = logging.getLogger("calcidet")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers = []
    yield logger
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_a_library_record_reaches_stderr_once_however_often_logging_is_set_up(tmp_path, capsys) -> None:
    setup_logging(0)
    setup_logging(0)
    synthesize(tmp_path / "s", n=1, seed=1, workers=1, dicom_fraction=0.0, size_range=(64, 64))  # logs at info
    logging.getLogger("calcidet.child").info("from a child logger")
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len([line for line in lines if "images/s" in line]) == 1
    assert lines[0].startswith("calcidet: 1 images in ")
    assert lines.count("calcidet: from a child logger") == 1
    assert captured.out == ""  # logs are not results


@pytest.mark.parametrize("verbosity, shown, hidden", [
    (-1, ["calcidet: WARNING: w"], ["calcidet: i", "calcidet: DEBUG: d"]),
    (0, ["calcidet: WARNING: w", "calcidet: i"], ["calcidet: DEBUG: d"]),
    (1, ["calcidet: WARNING: w", "calcidet: i", "calcidet: DEBUG: d"], []),
])
def test_verbosity_sets_the_level(verbosity: int, shown: list[str], hidden: list[str], capsys) -> None:
    log = setup_logging(verbosity)
    log.debug("d")
    log.info("i")
    log.warning("w")
    lines = capsys.readouterr().err.splitlines()
    assert all(line in lines for line in shown), lines
    assert not any(line in lines for line in hidden), lines


def test_other_ranks_keep_only_warnings_marked_with_their_rank(monkeypatch, capsys) -> None:
    log = setup_logging(0)
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # as Lightning's DDP strategy sets it on rank 1
    log.info("every rank reaches this line")
    log.warning("this rank's films are unreadable")
    assert capsys.readouterr().err.splitlines() == ["calcidet [rank 1]: WARNING: this rank's films are unreadable"]
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    log.info("rank zero speaks")
    assert capsys.readouterr().err == "calcidet: rank zero speaks\n"


def test_rank_falls_back_to_the_launcher_variables(monkeypatch) -> None:
    monkeypatch.delattr(rank_zero_only, "rank")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert current_rank() == 2
    monkeypatch.setenv("RANK", "5")
    assert current_rank() == 5


@pytest.mark.parametrize("argv, verbosity, rest", [
    (["-q", "synth", "--out", "x"], -1, ["synth", "--out", "x"]),
    (["fit", "--config", "c.yaml", "--verbose"], 1, ["fit", "--config", "c.yaml"]),
    (["detect", "a", "-v", "-q"], -1, ["detect", "a"]),  # the last one wins
    (["detect", "--", "-v"], 0, ["detect", "--", "-v"]),  # after --, a file named -v
])
def test_verbosity_flags_are_taken_from_anywhere(argv: list[str], verbosity: int, rest: list[str]) -> None:
    assert take_verbosity(argv) == (verbosity, rest)


def test_quiet_synth_prints_no_info_line(tmp_path, capsys) -> None:
    assert main(["-q", "synth", "--out", str(tmp_path / "quiet"), *TINY_SYNTH]) == 0
    quiet = capsys.readouterr()
    assert "images/s" not in quiet.err + quiet.out
    assert (tmp_path / "quiet" / "annotations.json").is_file()

    assert main(["synth", "--out", str(tmp_path / "default"), *TINY_SYNTH]) == 0
    default = capsys.readouterr()
    assert "images/s" in default.err and "images/s" not in default.out


def test_lightning_subcommands_take_the_flags_too(capsys) -> None:
    # LightningCLI would exit 2 on an argument it does not know
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-q", "--config", DEMO, "--print_config"])
    assert exc.value.code in (0, None)
    assert "optimizer: adamw" in capsys.readouterr().out


def test_help_lists_the_flags(capsys) -> None:
    with pytest.raises(SystemExit):  # the module docstring, then LightningCLI's own help
        main(["--help"])
    out = capsys.readouterr().out
    assert "-q" in out and "--verbose" in out


def test_predict_is_not_offered_and_points_to_detect(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = [line for line in capsys.readouterr().out.splitlines() if line.startswith("usage: calcidet")]
    assert usage and "{fit,validate,test}" in usage[0]
    assert main(["predict", "--config", DEMO]) == 2
    assert "calcidet detect INPUT..." in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status() -> None:
    """`calcidet ... | head` closes stdout early: exit 141, as coreutils do, and no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "calcidet.train.cli", "--version"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves before calcidet has imported anything, let alone printed
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
