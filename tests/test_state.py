"""The state file (splitter/state.py `StateFile`): written atomically, mode 0600, through a
temporary file whose name cannot be guessed, so a link planted in its directory is never
followed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from splitter.state import StateFile


def saved(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_bytes()))


def others(directory: Path, *keep: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p not in keep)


def test_save_writes_the_data_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(str(path))
    state.data["runtime"] = {"weights": {"blue": 1.0}}
    state.save()
    assert saved(path) == {"version": 1, "runtime": {"weights": {"blue": 1.0}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert others(tmp_path, path) == []  # no temporary file left behind

    # an existing file with looser permissions is replaced by a 0600 one
    path.chmod(0o644)
    state.data["runtime"] = {"weights": {"blue": 2.0}}
    state.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert saved(path)["runtime"] == {"weights": {"blue": 2.0}}


def test_save_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.json"
    StateFile(str(path)).save()
    assert saved(path) == {"version": 1}


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_link_at_the_old_temporary_name_is_not_followed(tmp_path: Path, dangling: bool) -> None:
    """The temporary file used to be `<path>.tmp-<pid>`: anyone who can write to the
    directory could point that name at another file and have splitter overwrite it."""
    path = tmp_path / "state.json"
    victim = tmp_path / "victim.txt"
    if not dangling:
        victim.write_bytes(b"precious\n")
        victim.chmod(0o644)
    planted = tmp_path / f"state.json.tmp-{os.getpid()}"
    planted.symlink_to(victim)

    state = StateFile(str(path))
    state.data["runtime"] = {"weights": {"blue": 1.0}}
    state.save()
    state.save()  # twice: a second save must not follow it either

    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_bytes() == b"precious\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert planted.is_symlink()  # left as it was
    assert not path.is_symlink() and path.is_file()
    assert saved(path)["runtime"] == {"weights": {"blue": 1.0}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_link_at_the_state_path_itself_is_replaced_not_written_through(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    path.symlink_to(victim)
    StateFile(str(path)).save()
    assert victim.read_bytes() == b"precious\n"
    assert not path.is_symlink() and saved(path) == {"version": 1}


def test_a_failed_save_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    # The rename fails: the path is a directory that is not empty.
    path = tmp_path / "state.json"
    path.mkdir()
    (path / "keep").write_text("x")
    state = StateFile(str(path))
    with pytest.raises(OSError):
        state.save()
    assert others(tmp_path, path) == []
    assert (path / "keep").read_text() == "x"
