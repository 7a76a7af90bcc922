"""Files atelier writes get the permissions a plain write would give (the umask decides, not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from atelier.utils import atomic_write_text, normal_mode, temp_dir


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_and_temp_dir_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
        folder = temp_dir(tmp_path, prefix=".swap.")
        os.mkdir(tmp_path / "plain-dir")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE((tmp_path / "plain-dir").stat().st_mode)


def test_normal_mode_reads_the_umask_without_changing_it():
    old = os.umask(0o027)
    try:
        assert normal_mode() == 0o640 and normal_mode(directory=True) == 0o750
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
