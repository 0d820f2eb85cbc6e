"""The numpy tokenizer against Keras's own `TextVectorization`, on tricky and on real texts."""

from __future__ import annotations

import json
import string
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from hpo.data import tokenizer as tk
from hpo.data.tokenizer import Tokenizer

from ..conftest import REAL_IMDB

if TYPE_CHECKING:
    from collections.abc import Sequence

# Keras's punctuation regex, as text_vectorization.py passes it to tf.strings.regex_replace.
KERAS_STRIP = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
ASCII_WHITESPACE = " \t\n\v\f\r"
# Characters Python's str.split() treats as whitespace and TensorFlow does not.
UNICODE_WHITESPACE = (
    "\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2003\u200a\u2028\u2029\u202f\u205f\u3000"
)

# Each line exercises something standardize, split or the lookup could get wrong.
TRICKY = [
    "The movie WAS great!!! The movie was GREAT.",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen 15 16 the",
    "ÉCOLE école Élan ÄRGER ärger ΣΟΦΙΑ σοφια ЖУК жук İstanbul ẞ ǅ Ǆ",
    "don't won't it's 'quoted' \"double\" rock'n'roll o'clock",
    "Loved it.<br /><br />Hated the end.<br />The END",
    "1999 2001: a space odyssey 3.14 1,000,000 $5 50% #1 007",
    "tab\tnew\nline\vvert\fform\rret  double  space \r\n crlf",
    "nbsp\xa0joined em\u2003space ideo\u3000space fs\x1cgs\x1drs\x1eus\x1f nel\x85x",
    "emoji 😀 😀😀 👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷 ａ",
    "",
    "   \t\n ",
    "!!! ... ??? --- ''' \"\"\"",
    string.punctuation,
    "a-b a_b a.b a/b a\\b a|b a~b a`b a^b a[b] a{b} a(b) a<b> a@b",
    "ties alpha beta gamma delta",
    "ties Alpha BETA gamma DELTA",
    "null\x00inside \x00lead",
]
# Texts only encoded, never learned from: unseen tokens must become 1.
UNSEEN = ["unseenword movie zzzz", "the " * 30, "Zebra! ÉCOLE", ""]


def _every_code_point() -> list[str]:
    # Surrogates are left out: no UTF-8 string, so no TensorFlow string, can hold one.
    return [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _layer(
    max_len: int, max_tokens: int | None = None, vocabulary: Sequence[str] | None = None
) -> Any:
    """The `TextVectorization` exports hold (Keras's defaults, and NUL as a space)."""
    from hpo.data.text_cache import make_vectorizer

    return make_vectorizer(
        max_len=max_len,
        max_vocab=max_tokens,
        vocabulary=None if vocabulary is None else list(vocabulary),
    )


def _keras_ids(layer: Any, texts: Sequence[str]) -> np.ndarray:
    return np.asarray(layer(np.array(texts, dtype=object)))


def _keras(
    train: Sequence[str], max_tokens: int | None, encoded: Sequence[str], max_len: int
) -> tuple[list[str], np.ndarray]:
    """What TextVectorization learns from `train` and gives for `encoded`."""
    layer = _layer(max_len, max_tokens)
    layer.adapt(np.array(train, dtype=object))
    return [str(token) for token in layer.get_vocabulary()], _keras_ids(layer, encoded)


def test_importing_the_tokenizer_loads_neither_tensorflow_nor_keras() -> None:
    code = (
        "import sys, hpo.data.tokenizer; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_standardize_matches_tensorflow_on_every_code_point() -> None:
    import tensorflow as tf

    from hpo.models._tokens import standardize_text

    text = "".join(_every_code_point())
    keras_default = tf.strings.regex_replace(tf.strings.lower(text), KERAS_STRIP, "")
    expected = standardize_text(tf.constant(text)).numpy().decode()
    assert tk.standardize(text) == expected == keras_default.numpy().decode().replace("\x00", " ")


def test_standardize_lowercases_ascii_only_and_strips_ascii_punctuation() -> None:
    import tensorflow as tf

    text = "ÀÉÄ ΣΟΦΙΑ ЖУК İ ẞ ǅ Hello, World! «quoted» ¿qué? ‘curly’ — dash"
    expected = "ÀÉÄ ΣΟΦΙΑ ЖУК İ ẞ ǅ hello world «quoted» ¿qué ‘curly’ — dash"
    assert tk.standardize(text) == expected
    assert tf.strings.regex_replace(tf.strings.lower(text), KERAS_STRIP, "").numpy().decode() == (
        expected
    )


@pytest.mark.parametrize("mark", list(string.punctuation))
def test_every_ascii_punctuation_character_is_stripped(mark: str) -> None:
    texts = [f"a{mark}b", f"{mark}lead trail{mark}", mark * 3, f"x {mark} y"]
    vocabulary, ids = _keras(texts, None, texts, 4)
    assert tk.split(tk.standardize(f"a{mark}b")) == ["ab"]
    assert tk.build_vocabulary(texts, None) == vocabulary
    np.testing.assert_array_equal(tk.encode(texts, vocabulary, 4), ids)


def test_split_matches_tensorflow_on_every_code_point() -> None:
    import tensorflow as tf

    # Each character sits between two letters: a whitespace character splits its pair apart.
    text = "".join(f"a{ch}b" for ch in _every_code_point())
    expected = [token.decode() for token in tf.strings.split(text).numpy()]
    assert tk.split(text) == expected


def test_split_on_the_six_ascii_whitespace_characters_only() -> None:
    import tensorflow as tf

    assert all(ch.isspace() for ch in UNICODE_WHITESPACE)  # Python's str.split() would split
    text = "a" + "b".join(ASCII_WHITESPACE) + "c" + "d".join(UNICODE_WHITESPACE) + "e"
    expected = ["a", "b", "b", "b", "b", "b", "c" + "d".join(UNICODE_WHITESPACE) + "e"]
    assert tk.split(text) == expected
    assert [t.decode() for t in tf.strings.split(text).numpy()] == expected
    assert tk.split(" \t\r\n leading  and trailing \v\f") == ["leading", "and", "trailing"]
    assert tk.split(ASCII_WHITESPACE) == []


def test_as_tokens_is_the_same_for_texts_the_tokenizer_encodes_the_same() -> None:
    # Two texts are copies to the held-out split when they give the same token ids.
    texts = ["Great  movie!\r\n", "great movie", "\tGREAT\vmovie...", "great movies"]
    vocabulary = tk.build_vocabulary(texts, max_tokens=None)
    ids = [tuple(row) for row in tk.encode(texts, vocabulary, 8)]
    keys = [tk.as_tokens(text) for text in texts]
    assert keys[:3] == ["great movie"] * 3 and keys[3] == "great movies"
    assert [a == b for a in ids for b in ids] == [a == b for a in keys for b in keys]
    assert tk.as_tokens(UNICODE_WHITESPACE) == UNICODE_WHITESPACE  # not whitespace to Keras
    assert tk.as_tokens(" \t!?\n") == ""


@pytest.mark.parametrize(("max_tokens", "max_len"), [(None, 16), (12, 3), (3, 5), (40, 1)])
def test_vocabulary_and_ids_match_text_vectorization(max_tokens: int | None, max_len: int) -> None:
    encoded = TRICKY + UNSEEN
    vocabulary, ids = _keras(TRICKY, max_tokens, encoded, max_len)
    assert tk.build_vocabulary(TRICKY, max_tokens) == vocabulary
    ours = tk.encode(encoded, vocabulary, max_len)
    assert ours.dtype == np.int32
    assert ours.shape == (len(encoded), max_len)
    np.testing.assert_array_equal(ours, ids)


def test_the_tricky_texts_exercise_what_they_claim() -> None:
    vocabulary = tk.build_vocabulary(TRICKY, None)
    lengths = [len(tk.split(tk.standardize(text))) for text in TRICKY]
    assert max(lengths) > 16 and 0 in lengths  # truncation and all-padding rows happen
    assert len(vocabulary) > 40  # max_tokens=12 and 40 cut the vocabulary
    assert "unseenword" not in vocabulary
    assert {"école", "École", "σοφια", "ΣΟΦΙΑ"} <= set(vocabulary)  # non-ASCII capitals stay
    ids = tk.encode(UNSEEN, vocabulary, 16)
    assert ids[0, 0] == 1 and ids[0, 1] > 1  # "unseenword" is out of vocabulary, "movie" is not
    assert "br" in vocabulary and "dont" in vocabulary and "nbsp\xa0joined" in vocabulary


def test_ties_are_broken_by_descending_utf8_bytes() -> None:
    # Two runs of equal counts: the order within each is the tie-break alone. In UTF-16 "😀" (a
    # surrogate pair, 0xD83D...) is below "ａ" (0xFF41); in UTF-8 bytes and code points, above.
    texts = ["z é ǅ ａ 😀 ab a b aa", "Ǆ", "é z"]
    expected = ["", "[UNK]", "é", "z", "😀", "ａ", "ǅ", "Ǆ", "b", "ab", "aa", "a"]
    vocabulary, _ = _keras(texts, None, texts, 2)
    assert vocabulary == expected
    assert tk.build_vocabulary(texts, None) == expected
    # Cutting inside a run of ties keeps the greatest tokens of the run.
    assert tk.build_vocabulary(texts, 5) == _keras(texts, 5, texts, 2)[0] == expected[:5]


def test_nul_is_a_space_so_a_vocabulary_of_nul_texts_exports_and_reproduces(
    tmp_path: Path,
) -> None:
    # "film\x00" and "film" were two tokens; the exported TextVectorization's vocabulary goes
    # through NumPy strings, which drop trailing NULs: "film" twice, a "repeated term" error.
    import keras

    texts = ["a a\x00 a\x00\x00 x\x00y", "a\x00 b film\x00", "film\x00\x00 Film"]
    vocabulary = tk.build_vocabulary(texts, None)
    assert vocabulary == ["", "[UNK]", "a", "film", "y", "x", "b"]
    learned = _layer(8)
    learned.adapt(np.array(texts, dtype=object))
    assert [str(token) for token in learned.get_vocabulary()] == vocabulary
    exported = _layer(8, vocabulary=vocabulary)
    ids = tk.encode(texts, vocabulary, 8)
    np.testing.assert_array_equal(ids, _keras_ids(exported, texts))
    # Saved and loaded (safe mode) as an export is, it still gives the same ids.
    inputs = keras.Input(shape=(), dtype="string")
    keras.Model(inputs, exported(inputs)).save(tmp_path / "vectorizer.keras")
    loaded = keras.models.load_model(tmp_path / "vectorizer.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(np.array(texts, dtype=object))), ids)


def test_texts_across_chunk_boundaries() -> None:
    # Empty texts next to the chunk boundaries, where the separators could shift rows.
    texts = [f"w{i % 97} w{i % 13} common" for i in range(2100)]
    for i in (0, 1023, 1024, 1025, 2047, 2048, 2099):
        texts[i] = ""
    vocabulary, ids = _keras(texts, 60, texts, 4)
    assert tk.build_vocabulary(texts, 60) == vocabulary
    ours = tk.encode(texts, vocabulary, 4)
    np.testing.assert_array_equal(ours, ids)
    assert not ours[[0, 1023, 1024, 2099]].any()


def test_real_imdb_reviews_match_text_vectorization() -> None:
    if not REAL_IMDB.is_file():
        pytest.fail(f"real IMDB archive missing at {REAL_IMDB}; ../shared/data/ must hold it")
    reviews: dict[str, list[str]] = {"pos": [], "neg": []}
    with tarfile.open(REAL_IMDB) as archive:
        for member in archive:
            parts = member.name.split("/")
            if len(parts) != 4 or parts[:2] != ["aclImdb", "train"] or parts[2] not in reviews:
                continue
            if member.name.endswith(".txt") and len(reviews[parts[2]]) < 1000:
                file = archive.extractfile(member)
                assert file is not None
                reviews[parts[2]].append(file.read().decode("utf-8"))
            if all(len(texts) == 1000 for texts in reviews.values()):
                break
    texts = reviews["pos"] + reviews["neg"]
    assert len(texts) == 2000
    vocabulary, ids = _keras(texts, 20000, texts, 400)
    assert len(vocabulary) == 20000
    assert tk.build_vocabulary(texts, 20000) == vocabulary
    ours = tk.encode(texts, vocabulary, 400)
    np.testing.assert_array_equal(ours, ids)
    assert (ours == 1).any()  # 2,000 reviews hold more than 20,000 distinct tokens
    assert (ours[:, -1] > 0).any() and (ours[:, -1] == 0).any()  # some truncated, some padded


def test_max_tokens_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="greater than 1"):
        tk.build_vocabulary(["a b"], 1)
    with pytest.raises(ValueError, match="greater than 1"):
        _layer(4, 1)
    assert tk.build_vocabulary([], None) == ["", "[UNK]"]


def test_a_vocabulary_of_the_special_tokens_only() -> None:
    # Keras accepts max_tokens=2 and then fails to build its empty lookup table; here it is the
    # vocabulary that makes every token out of vocabulary.
    with pytest.raises(Exception, match="cannot be empty"):
        _keras(TRICKY, 2, TRICKY, 5)
    vocabulary = tk.build_vocabulary(TRICKY, 2)
    assert vocabulary == ["", "[UNK]"]
    ids = tk.encode(TRICKY, vocabulary, 5)
    lengths = np.minimum([len(tk.split(tk.standardize(text))) for text in TRICKY], 5)
    np.testing.assert_array_equal(ids, np.arange(5) < lengths[:, None])
    restricted = _fitted().restrict(2, 5)
    np.testing.assert_array_equal(restricted.encode(TRICKY), ids)


def test_encode_rejects_a_malformed_vocabulary_and_length() -> None:
    with pytest.raises(ValueError, match="must start with"):
        tk.encode(["a"], ["a", "b"], 3)
    with pytest.raises(ValueError, match="unique"):
        tk.encode(["a"], ["", "[UNK]", "a", "a"], 3)
    with pytest.raises(ValueError, match="max_len"):
        tk.encode(["a"], ["", "[UNK]", "a"], 0)
    assert tk.encode([], ["", "[UNK]"], 3).shape == (0, 3)


def _fitted() -> Tokenizer:
    tokenizer = Tokenizer.fit(TRICKY, None, 16)
    assert tokenizer.vocabulary == tk.build_vocabulary(TRICKY, None)
    return tokenizer


def test_tokenizer_encodes_as_the_function_does() -> None:
    tokenizer = _fitted()
    texts = TRICKY + UNSEEN
    expected = tk.encode(texts, tokenizer.vocabulary, 16)
    np.testing.assert_array_equal(tokenizer.encode(texts), expected)
    # One text at a time gives the same rows.
    np.testing.assert_array_equal(np.concatenate([tokenizer.encode([t]) for t in texts]), expected)


def test_json_round_trip() -> None:
    tokenizer = _fitted()
    text = tokenizer.to_json()
    loaded = Tokenizer.from_json(text)
    assert loaded == tokenizer
    assert "École" in text  # written as UTF-8 text, not escapes
    np.testing.assert_array_equal(loaded.encode(TRICKY), tokenizer.encode(TRICKY))


def _edited(**changes: Any) -> str:
    data = json.loads(_fitted().to_json())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be an object"),
        (_edited(max_len=None), r"missing \['max_len'\]"),
        (_edited(extra=1), r"unknown \['extra'\]"),
        (_edited(format="other"), "'format' must be 'hpo.tokenizer'"),
        (_edited(version=2), "'version' must be 1"),
        (_edited(version=True), "'version' must be 1"),
        (_edited(standardize="lower"), "'standardize'"),
        (_edited(split="character"), "'split'"),
        (_edited(vocabulary="abc"), "'vocabulary' must be a list of strings"),
        (_edited(vocabulary=["", "[UNK]", 3]), "'vocabulary' must be a list of strings"),
        (_edited(vocabulary=["[UNK]", ""]), "must start with"),
        (_edited(vocabulary=["", "[UNK]", "a", "a"]), "unique"),
        (_edited(max_len="16"), "'max_len' must be an integer"),
        (_edited(max_len=0), "max_len must be at least 1"),
    ],
)
def test_from_json_rejects_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Tokenizer.from_json(text)


@pytest.mark.parametrize(("vocab_size", "seq_len"), [(3, 1), (7, 5), (20, 16), (10_000, 9)])
def test_restrict_equals_a_text_vectorization_on_the_cut_vocabulary(
    vocab_size: int, seq_len: int
) -> None:
    tokenizer = _fitted()
    texts = TRICKY + UNSEEN
    restricted = tokenizer.restrict(vocab_size, seq_len)
    assert restricted.vocabulary == tokenizer.vocabulary[:vocab_size]
    assert restricted.max_len == seq_len
    ours = restricted.encode(texts)
    layer = _layer(seq_len, vocabulary=tokenizer.vocabulary[:vocab_size])
    np.testing.assert_array_equal(ours, _keras_ids(layer, texts))
    full = tokenizer.encode(texts)
    clipped = np.where(full >= vocab_size, 1, full)[:, :seq_len]
    np.testing.assert_array_equal(ours, clipped)
    if vocab_size < len(tokenizer.vocabulary):
        assert (full >= vocab_size).any()  # the cut removes tokens these texts use


def test_restrict_rejects_sizes_out_of_range() -> None:
    tokenizer = _fitted()
    with pytest.raises(ValueError, match="vocab_size must be at least 2"):
        tokenizer.restrict(1, 4)
    with pytest.raises(ValueError, match="between 1 and this tokenizer's max_len 16"):
        tokenizer.restrict(10, 17)
    with pytest.raises(ValueError, match="between 1"):
        tokenizer.restrict(10, 0)


@pytest.mark.parametrize("max_tokens", [None, 12])
def test_decoded_texts_encode_back_to_the_same_ids(max_tokens: int | None) -> None:
    # "unk" is a real word of these texts: the out-of-vocabulary spelling must avoid it.
    texts = [*TRICKY, "unk UNK unk1 the", ""]
    tokenizer = Tokenizer.fit(texts, max_tokens, max_len=10)
    ids = tokenizer.encode(texts)
    assert (ids == 1).any() == (max_tokens is not None)
    decoded = tokenizer.decode(ids)
    assert len(decoded) == len(texts) and decoded[-1] == ""
    np.testing.assert_array_equal(tokenizer.encode(decoded), ids)
