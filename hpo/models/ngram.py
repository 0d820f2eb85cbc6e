"""Bag-of-n-grams text classifiers (fastText-style): averaged word and hashed n-gram embeddings.

Joulin et al. (2017), "Bag of Tricks for Efficient Text Classification": the embeddings of a
review's words and of its word bigrams (trigrams), each averaged over the review, feed a linear
classifier. No convolution: an epoch costs a fraction of a Conv1D one, the whole review is read
(word order only within an n-gram), and its errors differ from the convolutional families', which
is what an ensemble gains from.

N-grams are hashed into `ngram_buckets` rows inside the model, from the same token ids the other
text families take, so the exported ensemble needs no preprocessing of its own; padding (id 0)
never forms an n-gram and never changes a score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.cost import Rates
from hpo.space import suggest_all

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras
    import optuna

    from hpo.space import Space

__all__ = ["DEFAULTS", "SPACE", "build", "suggest"]

# Names of their own: the convolutional families' embedding_dim and dropout have other ranges,
# and a sampler pools what it learns about a parameter name across families.
# Its answer never depends on the padding after a text (tested), so batches may be cut.
MASKS_PADDING = True
# What a unit of this family's epoch costs, for the clock's prior (`hpo.cost.Rates`): fitted on
# six IMDB studies' 272 trials by benchmarks/bench_rates.py (RESULTS.md, "Each family's own
# prior rates").
PRIOR_RATES = Rates(flop_s=0.0, element_s=2e-09, step_s=0.0039, param_step_s=2.53e-09)
SPACE: Space = {
    "ngram_order": IntDistribution(1, 3),
    "ngram_dim": IntDistribution(16, 128, log=True),
    "ngram_buckets": CategoricalDistribution([65536, 131072, 262144, 524288]),
    "ngram_dropout": FloatDistribution(0.0, 0.7),
}
# Bigrams, 32 dimensions, 2^18 buckets, the whole review: 0.885 validation accuracy on the
# default study's split after 4 epochs of about 20 s (learning rate 2e-3; 1e-3 learns slower).
DEFAULTS: Mapping[str, Any] = {
    "ngram_order": 2,
    "ngram_dim": 32,
    "ngram_buckets": 262144,
    "ngram_dropout": 0.5,
    "vocab_size": 40000,
    "seq_len": 1600,
    "learning_rate": 2e-3,
}


def suggest(trial: optuna.Trial, space: Space = SPACE) -> dict[str, Any]:
    """Asks the trial for this family's hyperparameters."""
    return suggest_all(trial, space)


def build(params: Mapping[str, Any]) -> keras.Model:
    """Builds the bag-of-n-grams classifier for `params`.

    Args:
        params: This module's SPACE plus vocab_size, and `classes` (default 2).

    Returns:
        An uncompiled functional model mapping token ids [batch, any length] to P(class 1)
        (two classes) or to class probabilities (more). Trailing padding does not change the
        output.
    """
    import keras
    from keras import layers

    from hpo.models._masking import (
        HASH_VERSION,
        MaskedGlobalPooling1D,
        NGramHash,
        PaddingMask,
    )
    from hpo.models._textconv import probability_head

    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    dim = params["ngram_dim"]
    x = layers.Embedding(params["vocab_size"], dim, name="word_embedding")(inputs)
    bags = [MaskedGlobalPooling1D("average", name="words")(x, PaddingMask()(inputs))]
    for n in range(2, params["ngram_order"] + 1):
        ids = NGramHash(n, params["ngram_buckets"], HASH_VERSION, name=f"hash{n}")(inputs)
        x = layers.Embedding(params["ngram_buckets"], dim, name=f"gram{n}_embedding")(ids)
        bags.append(MaskedGlobalPooling1D("average", name=f"grams{n}")(x, PaddingMask()(ids)))
    x = layers.Concatenate(name="bags")(bags) if len(bags) > 1 else bags[0]
    x = layers.Dropout(params["ngram_dropout"], name="dropout")(x)
    return keras.Model(inputs, probability_head(x, params.get("classes", 2)), name="ngram")
