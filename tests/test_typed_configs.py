"""Choices are types: a typo in a config fails when it is parsed, naming the valid values.

Parse only: ``--print_config`` and parse errors exit before any model is built or film is read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import pytest

from calcidet.data.transforms import PRESETS, AugmentPreset
from calcidet.model.builder import ARCHS, Arch
from calcidet.model.module import CalcinosisDetector
from calcidet.train.cli import cli_main, main

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


@pytest.fixture(autouse=True)
def _bare_argv(monkeypatch) -> None:
    # as `calcidet ...` sees it; LightningCLI warns when given args while sys.argv holds pytest's
    monkeypatch.setattr(sys, "argv", ["calcidet"])


def test_choice_types_name_what_the_code_accepts() -> None:
    assert list(get_args(Arch)) == list(ARCHS)
    assert list(get_args(AugmentPreset)) == list(PRESETS)


@pytest.mark.parametrize("key, typo, valid", [
    ("model.optimizer", "adamx", ["adamw", "sgd"]),
    ("model.scheduler", "cosin", ["cosine", "step", "constant"]),
    ("model.arch", "fcos_tinny", list(ARCHS)),
    ("data.augment", "trian", list(PRESETS)),
    ("data.cache", "memroy", ["memory", "disk", "none"]),
])
def test_typo_fails_at_parse_time_listing_the_choices(key: str, typo: str, valid: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit", "--config", DEMO, f"--{key}", typo, "--print_config"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert key in err and typo in err
    expected = err[err.index("Expected"):]  # "Expected a typing.Literal['adamw', 'sgd']. Got value: adamx"
    for value in valid:
        assert repr(value) in expected


def test_print_config_shows_the_chosen_values(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit", "--config", DEMO, "--model.optimizer", "sgd", "--model.arch", "fcos_tiny",
                  "--data.augment", "light", "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    for line in ("optimizer: sgd", "arch: fcos_tiny", "augment: light", "scheduler: cosine"):
        assert f"  {line}\n" in out, line


def test_help_lists_the_choices(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "{adamw,sgd}" in out and "{cosine,step,constant}" in out
    assert "{" + ",".join(PRESETS) + "}" in out and "{" + ",".join(ARCHS) + "}" in out


def test_bad_choice_from_python_fails_before_building() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of adamw, sgd, not 'adamx'"):
        CalcinosisDetector(optimizer="adamx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheduler must be one of cosine, step, constant"):
        CalcinosisDetector(scheduler="linear")  # type: ignore[arg-type]


@pytest.mark.parametrize("argv, valid", [
    (["export", "x.ckpt", "--output", "x.onnx", "--format", "onxx"], ["onnx"]),
    (["detect", "in", "--checkpoint", "x.ckpt", "--output", "out", "--backend", "ort"], ["torch", "onnxruntime"]),
    (["export-images", "in", "--output", "out", "--bits", "12"], [8, 16]),
    (["convert", "--from", "coco", "src", "--images", "img", "--output", "o.json"], ["yolo", "voc", "cvat"]),
])
def test_tool_options_reject_a_typo_listing_the_choices(argv: list[str], valid: list, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    listed = err[err.index("invalid choice"):]  # "invalid choice: 'onxx' (choose from 'onnx')"
    for value in valid:
        assert repr(value) in listed
