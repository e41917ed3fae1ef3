"""The resource directory's path rules and the clean-up of expired temporary files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fluxfunc_common import resources
from fluxfunc_common.errors import BadRequest


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return resources.root_of(tmp_path / "res")


@pytest.mark.parametrize("rel", ["..", "../x", "a/../../x", "a/..", "/etc/passwd", "\\\\host\\x",
                                 "C:/x", "a\x00b", "x" * 256, "a/" + "y" * 300,
                                 "/".join(["a"] * 600)])
def test_paths_that_could_leave_the_directory_are_refused(root: Path, rel: str) -> None:
    with pytest.raises(BadRequest):
        resources.resolve(root, rel)


def test_symlinks_pointing_out_are_refused_and_inside_ones_allowed(root: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "out")
    (root / "in").mkdir()
    os.symlink(root / "in", root / "alias")
    with pytest.raises(BadRequest, match="leaves"):
        resources.resolve(root, "out")
    with pytest.raises(BadRequest, match="leaves"):
        resources.resolve(root, "out/file.txt")
    assert resources.resolve(root, "alias/file.txt") == root / "alias" / "file.txt"


def test_ordinary_paths_resolve_inside(root: Path) -> None:
    assert resources.resolve(root, "") == root
    assert resources.resolve(root, "./a//b/") == root / "a" / "b"
    assert resources.resolve(root, "报告/2024.csv") == root / "报告" / "2024.csv"


def test_client_file_names_are_reduced_to_one_part() -> None:
    assert resources.safe_file_name("../../etc/passwd") == "passwd"
    assert resources.safe_file_name("C:\\Users\\me\\a.txt") == "a.txt"
    assert resources.safe_file_name("..") == "file"
    assert resources.safe_file_name("") == "file"
    assert len(resources.safe_file_name("é" * 300).encode()) <= 200


def test_stamped_names_carry_their_expiry() -> None:
    expires = 1_800_000_000.0
    name = resources.stamped_name("report.csv", expires)
    assert name.endswith("_report.csv")
    assert resources.expiry_of(name) == expires
    assert resources.expiry_of("report.csv") is None


def test_sweep_removes_only_expired_temporary_files(root: Path) -> None:
    now = time.time()
    uploads, downloads = root / resources.UPLOADS, root / resources.DOWNLOADS
    uploads.mkdir()
    downloads.mkdir()
    old = uploads / resources.stamped_name("old.bin", now - 10)
    fresh = uploads / resources.stamped_name("new.bin", now + 3600)
    old_data = downloads / resources.stamped_name("api-resp.json", now - 1)
    mine = root / resources.stamped_name("kept.txt", now - 10)  # outside the temp folders
    for path in (old, fresh, old_data, mine):
        path.write_text("x")
    assert resources.sweep_expired(root, now) == 2
    assert not old.exists() and not old_data.exists()
    assert fresh.exists() and mine.exists()
    assert resources.sweep_expired(root / "missing", now) == 0


def test_an_uploaded_file_is_listed_with_dataflux_funcs_keys() -> None:
    f = resources.UploadedFile(file_path="/r/.uploads/x_a.txt", original_name="a.txt",
                               encoding="7bit", mime_type="text/plain", size=3)
    assert f.kwarg() == {"filePath": "/r/.uploads/x_a.txt", "originalname": "a.txt",
                         "encoding": "7bit", "mimetype": "text/plain", "size": 3}
