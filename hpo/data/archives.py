"""Reading a data set's `.tar(.gz)` archive, where one cut short is an error that says so."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import shlex
import tarfile
import zipfile
import zlib
from typing import TYPE_CHECKING

from hpo.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["open_archive", "zip_hint"]

# What Python's tarfile and its decompressors raise for an archive that ends early (an
# interrupted download or copy) or whose bytes were altered.
_DAMAGED = (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class _StrictTarInfo(tarfile.TarInfo):
    """A member's header, where one that is not a header (altered bytes) or that the file ends
    before (an archive cut at a member's end) is an error: Python's tarfile takes either, past
    the first member, as the archive's end and reads the members before it as the whole."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _StrictTarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as exc:
            # The end-of-archive mark (EOFHeaderError, not exported) ends it; a first header
            # that is not one is tarfile's own ReadError ("not a tar archive").
            if tarfile_.offset == 0 or type(exc).__name__ == "EOFHeaderError":
                raise
            raise tarfile.ReadError(
                f"{exc} at byte {tarfile_.offset}, before the end-of-archive mark"
            ) from None


@contextlib.contextmanager
def open_archive(source: Path, mode: str = "r|*") -> Iterator[tarfile.TarFile]:
    """`tarfile.open(source, mode)`, read within the `with`.

    Raises:
        DataError: The archive ends early or is damaged, wherever the reading finds it; names
            the file, its size and the fix.
    """
    try:
        with tarfile.open(source, mode, tarinfo=_StrictTarInfo) as archive:  # type: ignore[call-overload]
            yield archive
    except _DAMAGED as exc:
        size = source.stat().st_size / 1e6
        raise DataError(
            f"the archive {source} is cut short or damaged ({type(exc).__name__}: {exc}; the "
            f"file holds {size:.1f} MB): an interrupted download or copy leaves it so. Fetch or "
            f"copy it again (compare its SHA-256, `sha256sum`, with its source's)."
        ) from exc


def zip_hint(path: Path) -> str:
    """For a `.zip` given as data, how to give it instead (hpo reads `.tar(.gz)` archives, as
    a stream; a zip's index is at its end), else ""."""
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return ""
    folder = path.with_suffix("") if path.suffix else path.with_name(f"{path.name}-files")
    return (
        f" It is a .zip archive, which hpo does not read: unpack it "
        f"(unzip {shlex.quote(str(path))} -d {shlex.quote(str(folder))}) and give the folder."
    )
