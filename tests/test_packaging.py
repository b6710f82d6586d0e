"""The wheel that `pip install .` builds holds every module and data file of the package
(an editable install, which the tests use, would hide a missing subpackage)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    # From a copy of the checkout's files (a build/ directory left by an earlier build
    # would otherwise hide a missing package).
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    source = tmp_path / "src"
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    env = dict(os.environ, SPLITTER_PURE_BUILD="1")  # the plain build: same files, faster
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("splitter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "splitter"
    expected = {
        str(path.relative_to(REPO))
        for path in package.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix not in (".so", ".pyd", ".c", ".pyc")
    }
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"


def test_the_documented_layout_names_the_modules_that_exist() -> None:
    """docs/development.md's "The code layout" describes the package: every module and
    folder it names exists, and every top-level one is named."""
    page = (REPO / "docs" / "development.md").read_text()
    start = page.index("\n## The code layout\n")
    end = page.find("\n## ", start + 1)
    layout = page[start : end if end != -1 else len(page)]
    named = set(re.findall(r"`([\w.]+(?:\.py|/))`", layout)) - {"splitter/"}
    package = REPO / "splitter"
    existing = {p.name for p in package.rglob("*.py")} | {
        p.name + "/" for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert named - existing == set(), "named in docs/development.md but gone"
    top = {p.name for p in package.glob("*.py")} - {"__init__.py", "__main__.py"}
    top |= {p.name + "/" for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top - named == set(), "in splitter/ but not in docs/development.md's layout"
