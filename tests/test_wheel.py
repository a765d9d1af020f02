"""The installed package: one import name, `calcidet`, and a console script that runs from the wheel.

The wheel is built offline from a copy of the sources (no build isolation: nothing downloads) and
installed with pip into a fresh virtual environment. Its dependencies are borrowed from the test
environment through a path file, which adds that site-packages to ``sys.path`` without running the
editable install's own finder, so every ``calcidet`` module the checks import comes from the wheel.
"""
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "data", "model", "train"]

pytestmark = pytest.mark.slow


def _run(*cmd: str | Path, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", dist, src)
    (found,) = dist.glob("calcidet-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> tuple[Path, Path, set[str]]:
    """A fresh venv with the wheel installed: (its bin folder, its site-packages, what pip added there)."""
    root = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", root)
    python = root / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    before = {p.name for p in site.iterdir()}
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)
    added = {p.name for p in site.iterdir()} - before
    (site / "_calcidet_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co.
    return root / "bin", site, added


def test_wheel_holds_one_top_level_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"calcidet", wheel.name.split("-py3")[0] + ".dist-info"}
    # the three folders land under the one name, each a regular package
    for sub in ("data", "model", "train"):
        assert f"calcidet/{sub}/__init__.py" in names
    assert "calcidet/train/cli.py" in names
    assert "calcidet/model/radiograph_reference.npz" in names  # detect --image-check needs it installed
    assert not any(n.startswith("calcidet/data/films/") for n in names)  # demo films stay in the repo


def test_install_adds_only_calcidet_to_site_packages(venv, wheel):
    _, _, added = venv
    assert added == {"calcidet", wheel.name.split("-py3")[0] + ".dist-info"}, added


def test_console_script_and_imports_come_from_the_wheel(venv):
    bin_dir, site, _ = venv
    done = _run(bin_dir / "calcidet", "--help", cwd=bin_dir)  # not the repository: nothing local to import
    for tool in ("fit", "detect", "evaluate", "synth"):
        assert tool in done.stdout
    where = _run(bin_dir / "python", "-c",
                 "import calcidet.model.inference as m, calcidet.data.coco as c; print(m.__file__); print(c.__file__)",
                 cwd=bin_dir).stdout.split()
    assert all(Path(p).is_relative_to(site / "calcidet") for p in where), where
    # the generic names are not importable from the install
    done = subprocess.run([bin_dir / "python", "-c", "import data"], capture_output=True, text=True, cwd=bin_dir)
    assert done.returncode != 0 and "No module named 'data'" in done.stderr
