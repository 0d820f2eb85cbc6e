"""NBSVM in Keras: a linear classifier over a text's set of words and hashed n-grams, each
feature scaled by its naive-Bayes log-count ratio (Wang & Manning 2012, "Baselines and
Bigrams"; the logistic-regression variant).

The ratios come from the training split before training (`adapt`, which the runner calls with
the trial's training data; never validation or test data), and are saved with the model. On IMDB
NBSVM-bi is the baseline an NLP engineer tries first (91.2% in the paper); its errors differ from
the convolutional families', which is what an ensemble gains from (Mesnil et al. 2015).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.cost import Rates
from hpo.space import suggest_all

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras
    import numpy as np
    import optuna

    from hpo.space import Space

__all__ = ["DEFAULTS", "SPACE", "adapt", "build", "suggest"]

# Its answer never depends on the padding after a text (tested), so batches may be cut.
MASKS_PADDING = True
# What a unit of this family's epoch costs, for the clock's prior (`hpo.cost.Rates`): fitted on
# six IMDB studies' 272 trials by benchmarks/bench_rates.py (RESULTS.md, "Each family's own
# prior rates").
PRIOR_RATES = Rates(flop_s=0.0, element_s=2.1e-08, step_s=0.00319, param_step_s=6.28e-09)
SPACE: Space = {
    "nb_order": IntDistribution(1, 3),
    "nb_buckets": CategoricalDistribution([262144, 524288, 1048576, 2097152]),
    "nb_alpha": FloatDistribution(0.1, 2.0, log=True),
    "nb_l2": FloatDistribution(1e-7, 1e-3, log=True),
}
DEFAULTS: Mapping[str, Any] = {
    "nb_order": 2,
    "nb_buckets": 1048576,
    "nb_alpha": 1.0,
    "nb_l2": 1e-5,
    "vocab_size": 40000,
    "seq_len": 1600,
    "learning_rate": 3e-3,
}
# Rows of the training split hashed at a time while counting.
_ADAPT_BATCH = 256


def suggest(trial: optuna.Trial, space: Space = SPACE) -> dict[str, Any]:
    """Asks the trial for this family's hyperparameters."""
    return suggest_all(trial, space)


def build(params: Mapping[str, Any]) -> keras.Model:
    """Builds the classifier for `params`, with its ratios still 0 (see `adapt`).

    Args:
        params: This module's SPACE plus vocab_size, and `classes` (default 2).

    Returns:
        An uncompiled functional model mapping token ids [batch, any length] to P(class 1)
        (two classes) or to class probabilities (more). Trailing padding does not change the
        output.
    """
    import keras
    from keras import layers

    from hpo.models._nb import NaiveBayesLinear, NGramFeatures

    classes = int(params.get("classes", 2))
    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    features = NGramFeatures(
        params["nb_order"], params["vocab_size"], params["nb_buckets"], name="features"
    )
    units = 1 if classes == 2 else classes
    logits = NaiveBayesLinear(
        features.features, units, params["nb_l2"], dtype="float32", name="naive_bayes"
    )(features(inputs))
    activation = "sigmoid" if classes == 2 else "softmax"
    name = "probability" if classes == 2 else "probabilities"
    outputs = layers.Activation(activation, dtype="float32", name=name)(logits)
    return keras.Model(inputs, outputs, name="nbsvm")


def adapt(
    model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, params: Mapping[str, Any]
) -> None:
    """Sets the model's naive-Bayes ratios from the training split's texts and labels."""
    from keras import ops

    from hpo.models._nb import log_count_ratios

    features = model.get_layer("features")
    linear = model.get_layer("naive_bayes")
    batches = (
        ops.convert_to_numpy(features(x_train[start : start + _ADAPT_BATCH]))
        for start in range(0, len(x_train), _ADAPT_BATCH)
    )
    ratios = log_count_ratios(batches, y_train, linear.features, linear.units, params["nb_alpha"])
    linear.ratios.assign(ratios)
