"""NBSVM and a SeparableConv1D text classifier in one model: two paths over the same tokens,
trained together, whose probabilities are mixed (`nb_share` of the NBSVM path's).

The two views an IMDB ensemble gains from (Mesnil et al. 2015: a bag of n-grams and a network
that reads word order) in one forward pass. Mixing probabilities rather than adding logits keeps
the convolutional path learning after the NBSVM path has fitted a training review: the loss's
gradient through a path's probability is -1 / (the mixture's probability of the label), which
does not vanish as the other path grows sure of it.

It is not searched unless a study names it (`SEARCHED`): `hpo distill --family nbconv` makes it
the student of an ensemble of `nbsvm` and convolutional members, taking each path's parameters
from the fastest member that has them (`hpo.distill.build.choose_student`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.distributions import FloatDistribution

from hpo.models import nbsvm, sepconv1d
from hpo.space import suggest_all

if TYPE_CHECKING:
    from collections.abc import Mapping

    import keras
    import numpy as np
    import optuna

    from hpo.space import Space

__all__ = ["DEFAULTS", "SEARCHED", "SPACE", "adapt", "build", "suggest"]

# Both paths ignore the padding after a text (tested), so batches may be cut.
MASKS_PADDING = True
# Not among a study's families unless its `[space] family` names it: a default study's search
# stays what it was measured as.
SEARCHED = False
SPACE: Space = {
    **nbsvm.SPACE,
    **sepconv1d.SPACE,
    "nb_share": FloatDistribution(0.2, 0.8),
}
DEFAULTS: Mapping[str, Any] = {**sepconv1d.DEFAULTS, **nbsvm.DEFAULTS, "nb_share": 0.5}
NB_PATH = "nbsvm"
CONV_PATH = "sepconv1d"


def suggest(trial: optuna.Trial, space: Space = SPACE) -> dict[str, Any]:
    """Asks the trial for this family's hyperparameters."""
    return suggest_all(trial, space)


def build(params: Mapping[str, Any]) -> keras.Model:
    """Builds the two paths for `params` (the NBSVM path's ratios still 0, see `adapt`).

    Args:
        params: This module's SPACE plus vocab_size and seq_len, and `classes` (default 2).

    Returns:
        An uncompiled functional model mapping token ids [batch, any length] to P(class 1)
        (two classes) or to class probabilities (more): `nb_share` x the NBSVM path's plus
        (1 - `nb_share`) x the convolutional path's. Trailing padding does not change it.
    """
    import keras
    from keras import layers

    classes = int(params.get("classes", 2))
    share = float(params["nb_share"])
    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    nb = nbsvm.build(params)
    conv = sepconv1d.build(params)
    paths = [
        layers.Rescaling(share, dtype="float32", name="nb_share")(nb(inputs)),
        layers.Rescaling(1.0 - share, dtype="float32", name="conv_share")(conv(inputs)),
    ]
    name = "probability" if classes == 2 else "probabilities"
    outputs = layers.Add(dtype="float32", name=name)(paths)
    return keras.Model(inputs, outputs, name="nbconv")


def adapt(
    model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, params: Mapping[str, Any]
) -> None:
    """Sets the NBSVM path's naive-Bayes ratios from the training split's texts and labels."""
    nbsvm.adapt(model.get_layer(NB_PATH), x_train, y_train, params)
