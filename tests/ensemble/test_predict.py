"""`hpo predict` reads a folder of images as training reads one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpo.ensemble.predict import _image_files

if TYPE_CHECKING:
    from pathlib import Path


def test_a_folder_given_to_predict_is_read_as_training_reads_it(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    for path in (folder / "b.png", folder / ".ipynb_checkpoints" / "b.png", elsewhere / "c.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (folder / "._b.png").write_bytes(b"")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    one = tmp_path / "a.png"

    assert list(_image_files([str(one), str(folder)])) == [
        (str(one), False),
        (str(folder / "b.png"), True),
        (str(folder / "linked" / "c.png"), True),
    ]
