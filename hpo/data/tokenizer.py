r"""How text becomes token ids without TensorFlow: `TextVectorization`'s vocabulary and ids.

Gives exactly what `keras.layers.TextVectorization(max_tokens=N, output_mode="int",
output_sequence_length=L)` gives with its default `standardize="lower_and_strip_punctuation"` and
`split="whitespace"`, but for NUL, so that a study can tokenize on the JAX and PyTorch backends.
The rules, each checked against TensorFlow over every Unicode code point (see
tests/data/test_tokenizer.py):

- `tf.strings.lower` without an encoding lowercases the bytes A-Z only: "É", "Σ", "Ж" stay as
  they are.
- The punctuation Keras strips (`[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']`) is exactly the 32
  characters of `string.punctuation`; nothing outside ASCII is stripped.
- `tf.strings.split` with no separator splits on the six ASCII whitespace bytes " \t\n\v\f\r"
  only: "\xa0", "\u2003", "\u3000" and "\x1c"-"\x1f" stay inside tokens.
- NUL ("\x00") is a space: a token ending in NUL cannot be in an exported vectorizer's
  vocabulary, which passes through NumPy strings that drop trailing NULs ("film\x00" would be a
  second "film"). The exported vectorizer standardizes so too (`hpo.models._tokens.
  standardize_text`); TensorFlow's default keeps NULs inside tokens.
- The vocabulary is ordered by descending count, ties by descending token compared as UTF-8 bytes
  (`np.lexsort((tokens, counts))[::-1]` in Keras's `IndexLookup.finalize_state`).

All five rules act on ASCII bytes, and UTF-8 never uses an ASCII byte inside a multi-byte
character, so the work is done on the UTF-8 bytes, as TensorFlow does, where `bytes.translate` and
`bytes.split` run in C and `bytes.split()` splits on exactly those six bytes.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo._json import parse_json

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = ["Tokenizer", "build_vocabulary", "encode", "split", "standardize"]

# Keras's mask (padding, id 0) and out-of-vocabulary (id 1) tokens, first in every vocabulary.
_SPECIAL = ("", "[UNK]")
_OOV_ID = 1
# A-Z to a-z, and NUL to a space.
_LOWER = bytes.maketrans(
    string.ascii_uppercase.encode() + b"\x00", string.ascii_lowercase.encode() + b" "
)
_PUNCTUATION = string.punctuation.encode()
# Texts are tokenized many at a time, joined by this token: 0xFF never occurs in UTF-8, so no
# text can produce it, and one C-level split covers the whole chunk.
_SEPARATOR = b"\xff"
_JOIN = b" " + _SEPARATOR + b" "
# Texts per chunk: enough that the per-chunk numpy work is negligible, few enough that a chunk's
# token objects stay small (1,024 IMDB reviews: about 240,000 tokens, some 11 MB).
_CHUNK = 1024
_FORMAT = "hpo.tokenizer"
_VERSION = 1
_JSON_KEYS = {"format", "version", "standardize", "split", "vocabulary", "max_len"}


def standardize(text: str) -> str:
    """Lowercases ASCII letters and deletes ASCII punctuation, as `TextVectorization` does, and
    makes NUL a space.

    Args:
        text: The raw text.

    Returns:
        The text with A-Z lowercased, NUL replaced by a space and the 32 `string.punctuation`
        characters removed; every other character, whitespace and non-ASCII letters included,
        is kept.
    """
    return text.encode().translate(_LOWER, _PUNCTUATION).decode()


def as_tokens(text: str) -> str:
    """`text` as the tokenizer sees it: standardized, its tokens joined by one space each.

    Two texts that differ only in case, ASCII punctuation or whitespace (a trailing newline,
    Windows line ends, a doubled space) give the same.
    """
    return " ".join(split(standardize(text)))


def split(text: str) -> list[str]:
    """Splits on runs of the six ASCII whitespace characters, as `tf.strings.split` does.

    Args:
        text: Usually a standardized text.

    Returns:
        The non-empty pieces between runs of " ", "\\t", "\\n", "\\v", "\\f" and "\\r".
    """
    return [token.decode() for token in text.encode().split()]


def build_vocabulary(texts: Iterable[str], max_tokens: int | None) -> list[str]:
    """The vocabulary `TextVectorization(max_tokens=max_tokens).adapt(texts)` learns.

    Args:
        texts: The training texts; read once.
        max_tokens: The vocabulary's largest size, padding and out-of-vocabulary tokens included;
            None for no limit. Keras requires more than 1.

    Returns:
        `["", "[UNK]"]` followed by the tokens of `texts` by descending count, ties broken by
        descending UTF-8 bytes, as `layer.get_vocabulary()` lists them.

    Raises:
        ValueError: `max_tokens` is 1 or less.
    """
    if max_tokens is not None and max_tokens <= 1:
        raise ValueError(
            f"max_tokens must be greater than 1 (room for the padding and out-of-vocabulary "
            f"tokens) or None for no limit, got {max_tokens}."
        )
    counts: Counter[bytes] = Counter()
    for tokens in _token_chunks(texts):
        counts.update(tokens)
    counts.pop(_SEPARATOR, None)
    # Keras takes np.lexsort((tokens, counts))[::-1]: counts descending, equal counts by token
    # descending. Tokens are unique, so sorting by token and then, stably, by count gives the
    # same order without numpy's object comparisons.
    ranked = sorted(counts, reverse=True)
    ranked.sort(key=counts.__getitem__, reverse=True)
    if max_tokens is not None:
        ranked = ranked[: max_tokens - len(_SPECIAL)]
    return [*_SPECIAL, *(token.decode() for token in ranked)]


def encode(texts: Sequence[str], vocabulary: Sequence[str], max_len: int) -> np.ndarray:
    """Token ids as `TextVectorization(vocabulary=..., output_sequence_length=max_len)` gives.

    Args:
        texts: The texts to encode.
        vocabulary: A vocabulary as `build_vocabulary` returns it: `""` and `"[UNK]"` first, then
            unique tokens; a token's id is its index.
        max_len: Length of every row.

    Returns:
        An int32 array of shape `[len(texts), max_len]`: each text's first `max_len` token ids,
        1 for tokens not in `vocabulary`, then 0s.

    Raises:
        ValueError: `max_len` is not positive, or `vocabulary` is malformed.
    """
    _check_max_len(max_len)
    return _encode(texts, _index(vocabulary), max_len)


@dataclass(frozen=True)
class Tokenizer:
    """A vocabulary and a sequence length: what turns raw text into one model's inputs.

    Attributes:
        vocabulary: `""` and `"[UNK]"`, then unique tokens; a token's id is its index.
        max_len: Length of every encoded row.
    """

    vocabulary: list[str]
    max_len: int

    def __post_init__(self) -> None:
        _check_max_len(self.max_len)
        _check_vocabulary(self.vocabulary)

    @classmethod
    def fit(cls, texts: Iterable[str], max_tokens: int | None, max_len: int) -> Tokenizer:
        """Learns the vocabulary of `texts` (see `build_vocabulary`).

        Args:
            texts: The training texts.
            max_tokens: The vocabulary's largest size, special tokens included; None: no limit.
            max_len: Length of every encoded row.
        """
        return cls(build_vocabulary(texts, max_tokens), max_len)

    @cached_property
    def _ids(self) -> dict[bytes, int]:
        # Built once per tokenizer: encoding one text at a time must not rebuild it.
        return _index(self.vocabulary)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids of `texts`, int32 `[len(texts), max_len]` (see `encode`)."""
        return _encode(texts, self._ids, self.max_len)

    def decode(self, ids: np.ndarray) -> list[str]:
        """Texts that `encode` turns back into `ids`: each row's tokens joined by spaces.

        The vocabulary's tokens are standardized and hold no whitespace, so they encode to
        themselves; the out-of-vocabulary id 1 is spelled as a word the vocabulary lacks. This
        is how a study's validation texts are recovered from its token cache, which keeps no
        raw text.

        Args:
            ids: Token ids `[n, length]` as `encode` gives them (id 0 is padding).
        """
        spelled = [*self.vocabulary]
        spelled[0], spelled[_OOV_ID] = "", self._unknown_word
        return [" ".join(spelled[i] for i in row if i) for row in np.asarray(ids).tolist()]

    @cached_property
    def _unknown_word(self) -> str:
        known = set(self.vocabulary)
        return next(w for n in range(len(known) + 1) if (w := f"unk{n or ''}") not in known)

    def restrict(self, vocab_size: int, seq_len: int) -> Tokenizer:
        """The tokenizer of the first `vocab_size` vocabulary entries and `seq_len` tokens.

        Its ids equal this tokenizer's with ids of `vocab_size` or more replaced by 1 and the
        columns past `seq_len` cut.

        Args:
            vocab_size: Vocabulary entries to keep, special tokens included; a value past the
                vocabulary's size keeps all of it, as slicing does.
            seq_len: Row length, at most `max_len`.

        Raises:
            ValueError: `vocab_size` is below 2 or `seq_len` is not in 1..max_len.
        """
        if vocab_size < len(_SPECIAL):
            raise ValueError(
                f"vocab_size must be at least {len(_SPECIAL)} (the padding and "
                f"out-of-vocabulary tokens), got {vocab_size}."
            )
        if not 1 <= seq_len <= self.max_len:
            raise ValueError(
                f"seq_len must be between 1 and this tokenizer's max_len {self.max_len}, got "
                f"{seq_len}. Fit a tokenizer with max_len={seq_len} for longer rows."
            )
        return Tokenizer(self.vocabulary[:vocab_size], seq_len)

    def to_json(self) -> str:
        """The tokenizer as JSON text, for saving beside an exported model."""
        return json.dumps(
            {
                "format": _FORMAT,
                "version": _VERSION,
                "standardize": "lower_and_strip_punctuation",
                "split": "whitespace",
                "vocabulary": self.vocabulary,
                "max_len": self.max_len,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Reads what `to_json` wrote.

        Args:
            text: The JSON text.

        Raises:
            ValueError: The text is not JSON, or not a tokenizer of this format and version;
                the message names the field at fault.
        """
        try:
            data = parse_json(text)
        except ValueError as exc:
            raise ValueError(f"tokenizer JSON is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"tokenizer JSON must be an object, got {type(data).__name__}.")
        _check_json_fields(data)
        vocabulary, max_len = data["vocabulary"], data["max_len"]
        if not isinstance(vocabulary, list) or not all(isinstance(t, str) for t in vocabulary):
            raise ValueError("tokenizer JSON field 'vocabulary' must be a list of strings.")
        if not isinstance(max_len, int) or isinstance(max_len, bool):
            raise ValueError(f"tokenizer JSON field 'max_len' must be an integer, got {max_len!r}.")
        try:
            return cls(vocabulary, max_len)
        except ValueError as exc:
            raise ValueError(f"tokenizer JSON is invalid: {exc}") from exc


def _check_json_fields(data: dict[str, Any]) -> None:
    missing, unknown = _JSON_KEYS - data.keys(), data.keys() - _JSON_KEYS
    if missing or unknown:
        raise ValueError(
            f"tokenizer JSON must have exactly the fields {sorted(_JSON_KEYS)}; missing "
            f"{sorted(missing)}, unknown {sorted(unknown)}."
        )
    expected = {
        "format": _FORMAT,
        "version": _VERSION,
        "standardize": "lower_and_strip_punctuation",
        "split": "whitespace",
    }
    for key, value in expected.items():
        if data[key] != value or type(data[key]) is not type(value):
            raise ValueError(
                f"tokenizer JSON field {key!r} must be {value!r}, got {data[key]!r}; it was "
                "written by another program or version."
            )


def _check_max_len(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}.")


def _check_vocabulary(vocabulary: Sequence[str]) -> None:
    if list(islice(vocabulary, len(_SPECIAL))) != list(_SPECIAL):
        raise ValueError(
            f"vocabulary must start with the padding and out-of-vocabulary tokens "
            f"{list(_SPECIAL)}, got {list(islice(vocabulary, len(_SPECIAL)))}. Use the list "
            "build_vocabulary returns."
        )
    if len(set(vocabulary)) != len(vocabulary):
        repeated = [t for t, n in Counter(vocabulary).items() if n > 1]
        raise ValueError(f"vocabulary tokens must be unique; repeated: {repeated[:5]}.")


def _index(vocabulary: Sequence[str]) -> dict[bytes, int]:
    _check_vocabulary(vocabulary)
    ids = {token.encode(): i for i, token in enumerate(vocabulary)}
    # Marks where one text ends in a chunk; -1 is no id, so it cannot be mistaken for a token.
    ids[_SEPARATOR] = -1
    return ids


def _token_chunks(texts: Iterable[str]) -> Iterator[list[bytes]]:
    """Each chunk of texts as one token list, texts separated by `_SEPARATOR`."""
    iterator = iter(texts)
    while chunk := list(islice(iterator, _CHUNK)):
        yield _JOIN.join([text.encode() for text in chunk]).translate(_LOWER, _PUNCTUATION).split()


def _encode(texts: Sequence[str], ids: dict[bytes, int], max_len: int) -> np.ndarray:
    out = np.zeros((len(texts), max_len), dtype=np.int32)
    row = 0
    for tokens in _token_chunks(texts):
        found = np.fromiter(
            map(ids.get, tokens, repeat(_OOV_ID)), dtype=np.int32, count=len(tokens)
        )
        is_end = found == -1
        ends = np.flatnonzero(is_end)
        # A chunk of n texts holds n - 1 separators; the last text ends with the chunk.
        lengths = np.diff(ends, prepend=-1, append=len(found)) - 1
        token_ids = found[~is_end]
        starts = np.cumsum(lengths) - lengths
        column = np.arange(len(token_ids)) - np.repeat(starts, lengths)
        rows = np.repeat(np.arange(row, row + len(lengths)), lengths)
        kept = column < max_len
        out[rows[kept], column[kept]] = token_ids[kept]
        row += len(lengths)
    return out
