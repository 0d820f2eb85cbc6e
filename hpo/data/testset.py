"""Which test data an ensemble was evaluated on: a fingerprint, recorded on the study and compared.

`hpo ensemble` reads the test set once, for its final evaluation. Its report.json records what it
read: a SHA-256 over the test inputs and labels as the task loaded them (in the task's order:
a folder's files by class, then path; a table's rows as written), their number, and where they
were read from. The study records the latest one (`test_data`), so a later ensemble of the study
that evaluates on other data says so, naming both fingerprints and what changed.

That is a warning, not an error: evaluating on new test data (a fixed label, a fresh sample,
another copy) is a deliberate and legitimate thing to do, and the ensemble's members and weights
do not depend on the test set, so nothing is mixed up. What must not happen is that the two
reports' scores are compared as if they were measured on the same examples. (Data the trials
trained on is another matter: `hpo.data.provenance` refuses that.)
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["TEST_DATA_ATTR", "Fingerprint", "change", "fingerprint"]

TEST_DATA_ATTR: Final = "test_data"
# Names the hashing scheme: a new scheme changes it, so old and new fingerprints never match.
_SCHEME = b"hpo-test-data-v1\0"


@dataclass(frozen=True)
class Fingerprint:
    """The identity of a test set as a task loaded it.

    Attributes:
        sha256: SHA-256 over `inputs_sha256` and `labels_sha256`: equal for the same examples
            with the same labels in the same order, wherever they were read from.
        inputs_sha256: SHA-256 of the inputs: each text's UTF-8 bytes after its length, or an
            array's dtype, shape and bytes (the decoded images).
        labels_sha256: SHA-256 of the labels as little-endian int64.
        examples: The number of test examples.
        source: Where they were read from (a file, folder or archive); context only.
    """

    sha256: str
    inputs_sha256: str
    labels_sha256: str
    examples: int
    source: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, for report.json and the study."""
        return dataclasses.asdict(self)


def fingerprint(raw: np.ndarray, labels: np.ndarray, source: Path | str) -> Fingerprint:
    """Fingerprints test inputs (`TestSet.raw`: texts or an array) and their labels.

    One pass of SHA-256 over the data the ensemble already holds in memory: 0.2 s for IMDB's
    25,000 test reviews and 0.07 s for CIFAR-10's 10,000 images on a laptop-class CPU, against
    17 s and 21 s to read them.
    """
    inputs = hashlib.sha256(_SCHEME)
    if raw.dtype.kind in "OU":
        inputs.update(b"texts\0")
        for text in raw:
            data = str(text).encode("utf-8", errors="surrogatepass")
            inputs.update(len(data).to_bytes(8, "little"))
            inputs.update(data)
    else:
        array = np.ascontiguousarray(raw, dtype=raw.dtype.newbyteorder("<"))
        inputs.update(f"array {array.dtype.str} {array.shape}\0".encode())
        inputs.update(array.data)
    label_array = np.ascontiguousarray(labels, dtype="<i8")
    labels_digest = hashlib.sha256(_SCHEME + f"labels {label_array.shape}\0".encode())
    labels_digest.update(label_array.data)
    inputs_hex, labels_hex = inputs.hexdigest(), labels_digest.hexdigest()
    return Fingerprint(
        sha256=hashlib.sha256(_SCHEME + f"{inputs_hex} {labels_hex}".encode()).hexdigest(),
        inputs_sha256=inputs_hex,
        labels_sha256=labels_hex,
        examples=len(label_array),
        source=str(source),
    )


def change(previous: Mapping[str, Any] | None, current: Fingerprint) -> dict[str, Any] | None:
    """How `current` differs from the study's recorded test data, or None if it does not.

    Args:
        previous: The study's `test_data` attribute (an earlier ensemble's `Fingerprint` with
            its `out_dir` and `created`), or None when no ensemble recorded one.

    Returns:
        None when nothing was recorded or the fingerprints are equal; else a dict for report.json:
        `previous` and `current` (fingerprint, examples, source), `changed` (what differs, in
        words) and `message` (the warning).
    """
    if not isinstance(previous, dict) or previous.get("sha256") in (None, current.sha256):
        return None
    changed = []
    if previous.get("examples") != current.examples:
        changed.append(f"the number of examples ({previous.get('examples')} -> {current.examples})")
    if previous.get("inputs_sha256") != current.inputs_sha256:
        changed.append("the inputs")
    if previous.get("labels_sha256") != current.labels_sha256:
        changed.append("the labels")
    if previous.get("source") != current.source:
        changed.append(f"the source ({previous.get('source')} -> {current.source})")
    where = f"{previous.get('out_dir', 'an earlier ensemble')}, {previous.get('created', '?')}"
    message = (
        f"this ensemble is evaluated on other test data than the study's previous ensemble "
        f"({where}): test fingerprint {current.sha256} ({current.examples} examples from "
        f"{current.source}) differs from {previous['sha256']} ({previous.get('examples')} "
        f"examples from {previous.get('source')}); changed: {', '.join(changed)}. Its test "
        f"scores are not comparable with that report's; report.json records both under "
        f"'test_data_changed'. If this is not deliberate, point --data (for a table's test "
        f"table, [data] test_path) at the test data used before."
    )
    return {
        "previous": dict(previous),
        "current": current.as_dict(),
        "changed": changed,
        "message": message,
    }
