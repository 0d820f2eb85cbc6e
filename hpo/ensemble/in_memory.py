"""How to combine, from Python: an ensemble to predict with, evaluate on your test set, export.

`Tuner.ensemble()` fits the ensemble as `hpo ensemble` does, on validation predictions only
(`hpo.ensemble.build.fit_ensemble`), and hands it back in memory: the test set is yours, read by
`evaluate` alone and only when you call it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo import metrics
from hpo._stop import stoppable
from hpo.contract import Attr
from hpo.data.in_memory import labels_or_targets, read_batches
from hpo.ensemble.build import DEFAULT_POOL, FittedEnsemble, fit_ensemble
from hpo.ensemble.calibration import temperature_slope
from hpo.ensemble.export import EXPORT_NAME, check_export, input_names
from hpo.ensemble.output_folder import publish, staging_for
from hpo.ensemble.regression import FittedRegression, fit_regression, is_regression
from hpo.ensemble.weighting import ensemble_arguments
from hpo.errors import ConfigError, DataError, HpoError
from hpo.scratch import scratch_folder
from hpo.training.interface import tolerance

if TYPE_CHECKING:
    from collections.abc import Iterable

    import keras

    from hpo.api import Study

__all__ = ["Ensemble", "fit_in_memory"]


def fit_in_memory(
    study: Study,
    *,
    top: int = 5,
    pool: int | None = None,
    method: str = "caruana",
    calibrate: bool = True,
) -> Ensemble:
    """Fits a study's ensemble on validation predictions (see `Tuner.ensemble`).

    Raises:
        ConfigError: A bad argument.
        StoreError: No COMPLETE trial with a usable checkpoint.
    """
    weighting = ensemble_arguments(top, method)
    scratch = scratch_folder("ensemble")
    fitted: FittedEnsemble | FittedRegression
    if is_regression(study.optuna_study):
        fitted = fit_regression(
            study.config, study.optuna_study, Path(scratch.name), top=top, method=weighting
        )
    else:
        fitted = fit_ensemble(
            study.config,
            study.optuna_study,
            Path(scratch.name),
            top=top,
            pool=DEFAULT_POOL if pool is None else pool,
            method=weighting,
            calibrate=calibrate,
        )
    scratch.cleanup()  # the members are loaded; their downloaded files are not needed
    return Ensemble(fitted)


class Ensemble:
    """The best trials' weighted (and calibrated) average, chosen on validation data; for
    regression targets, their weighted average (`hpo.ensemble.regression`).

    Attributes:
        members: The trial numbers of the members that carry weight, best first.
        weights: Their weights (summing to 1).
        temperature: The fitted temperature (1.0 without calibration, and for regression).
    """

    def __init__(self, fitted: FittedEnsemble | FittedRegression) -> None:
        self._fitted = fitted
        if isinstance(fitted, FittedRegression):
            weights, self.temperature = fitted.weights, 1.0
        else:
            weights, self.temperature = fitted.choice.weights, float(fitted.choice.temperature)
        kept = [i for i, w in enumerate(weights) if w > 0]
        self.members = [fitted.members[i].trial.number for i in kept]
        self.weights = [float(weights[i]) for i in kept]
        # The members the export holds (`export_ensemble` leaves out those of weight 0).
        self._weighted_models = [fitted.members[i].model for i in kept]

    def __repr__(self) -> str:
        return f"Ensemble(members={self.members}, weights={[round(w, 3) for w in self.weights]})"

    @stoppable
    def predict(self, x: Any) -> np.ndarray:
        """Class probabilities for inputs `x` (arrays, or a dataset of batches of inputs or of
        `(inputs, labels)`, as Keras's `predict` takes one): `[n]` (of class 1) for two
        classes, else `[n, classes]`; for regression, the predicted targets in the shape
        of the search's targets (`[n]` or `[n, 1]` for one)."""
        return self._fitted.predict(self._inputs(x))

    @stoppable
    def evaluate(self, x: Any, y: Any = None) -> dict[str, Any]:
        """Scores the ensemble and each member on your test data (read here only).

        Args:
            x: Test inputs, as the search's; or a dataset of `(inputs, labels)` batches, as
                Keras's `evaluate` takes one (then `y` is None).
            y: Test labels: class indices or one-hot rows (regression: the targets).

        Returns:
            `accuracy` and `log_loss` of the ensemble, `best_member_accuracy` (of the trial
            ranked best by the study's objective, the one the ensemble is to beat, whether or
            not it carries weight) and `members` (trial number -> accuracy, for the trials of
            `self.members`: those that carry weight). For targets: `mean_squared_error` and
            `mean_absolute_error` of the ensemble, `best_member_mean_squared_error` and
            `members` (trial number -> squared error); for targets of 0s and 1s (multi-label
            rows), also the ensemble's binary `accuracy` (each label of each example alike,
            at 0.5).
        """
        fitted = self._fitted
        regression = isinstance(fitted, FittedRegression)
        if y is None:
            x, y, weights, _ = read_batches(x, "x")
            if weights is not None:
                raise DataError(
                    "x: its batches carry weights, and the ensemble is scored on every test "
                    "example alike: drop them, dataset.map(lambda x, y, w: (x, y))."
                )
        inputs = self._inputs(x)
        labels = labels_or_targets(y, "y_test", targets=regression)
        if len(labels) != len(inputs):
            raise DataError(f"{len(inputs)} test inputs but {len(labels)} labels; give as many.")
        if not regression:
            # [members, n] of class 1's probability, or [members, n, classes].
            classes = 2 if fitted.val_matrix.ndim == 2 else fitted.val_matrix.shape[2]
            outside = labels[(labels < 0) | (labels >= classes)]
            if len(outside):
                raise DataError(
                    f"y: {len(outside)} test label(s) are no class of the ensemble's {classes} "
                    f"(0 to {classes - 1}), the first {outside[0]}; give the labels as the "
                    f"search's were, or drop those examples."
                )
        matrix = fitted.member_predictions(inputs)
        best = fitted.members[0].trial.number
        if isinstance(fitted, FittedRegression):
            errors = {
                m.trial.number: round(metrics.squared_error(labels, p), 6)
                for m, p in zip(fitted.members, matrix, strict=True)
            }
            blended = fitted.blend(matrix)
            scores = {
                "mean_squared_error": metrics.squared_error(labels, blended),
                "mean_absolute_error": metrics.absolute_error(labels, blended),
                "best_member_mean_squared_error": errors[best],
                "members": {n: errors[n] for n in self.members},
            }
            if metrics.binary_targets(labels):  # multi-label rows: each label's accuracy
                scores["accuracy"] = metrics.binary_accuracy(labels, blended)
            return scores
        ensemble = fitted.choice.predict(matrix)
        members = {
            m.trial.number: round(metrics.accuracy(labels, p), 6)
            for m, p in zip(fitted.members, matrix, strict=True)
        }
        return {
            "accuracy": metrics.accuracy(labels, ensemble),
            "log_loss": metrics.log_loss(labels, ensemble),
            "best_member_accuracy": members[best],
            # The members `print(ensemble)` shows, not the candidates left at weight 0.
            "members": {n: members[n] for n in self.members},
        }

    @stoppable
    def export(self, path: str | Path, formats: Iterable[str] = ("keras",)) -> Path:
        """Writes the ensemble as one Keras model, and in the serving formats asked for, and
        checks that each, loaded back by its own runtime, reproduces the ensemble on
        validation rows (of every class, for a classifier).

        Load the `.keras` file with `hpo.load_model(path)` (or `keras.models.load_model` after
        `import hpo`); the SavedModel with `tf.saved_model.load` (TensorFlow Serving), the ONNX
        file with `onnxruntime`, as `hpo export` writes them ([serving](serving.md)).

        Args:
            path: A `.keras` file, or a folder to write `ensemble.keras` into (as `hpo
                ensemble` writes it; `hpo.load_model` takes either). The other formats go in
                that folder (beside the file).
            formats: Any of "keras", "savedmodel", "onnx", "litert" (the last three need the
                TensorFlow backend, and ONNX and LiteRT their extras).

        Returns:
            The `.keras` file written, or the folder, where "keras" is not among `formats`.
        """
        from hpo.backend import Backend
        from hpo.ensemble.export import keras_config_backend
        from hpo.ensemble.serving import (
            Format,
            Reference,
            as_formats,
            check_formats,
            check_servable,
            serving_backend,
            write_exports,
        )

        file = Path(path)
        if file.suffix in (".h5", ".hdf5", ".tf", ".onnx", ".tflite"):
            raise ConfigError(
                f"export(path) writes a .keras file, or ensemble.keras into a folder; got {file}. "
                f"Use '{file.with_suffix('.keras')}', and formats=('onnx',) for an ONNX file."
            )
        asked = set(as_formats(formats))
        backend = keras_config_backend()
        names = sorted(f.value for f in asked - {Format.KERAS})
        made_on = Backend(backend)
        if serving_backend(made_on, asked) is not made_on:
            # TensorFlow writes them, and Keras cannot switch backends in a running process.
            # A Tuner made again there reads the search's trials, and its export writes what
            # Keras's own does not (Model.export's ONNX of a mixed_bfloat16 model mixes float16
            # and bfloat16, which ONNX Runtime refuses to load): a float32 copy, checked.
            raise ConfigError(
                f"formats {names} are written by TensorFlow, and Keras runs on {backend} in "
                f"this process. Export formats=('keras',) here; for the others, in a process "
                f"started with KERAS_BACKEND=tensorflow, make the same hpo.Tuner (its model, "
                f"directory and project_name; no search), call tuner.ensemble(...) as here, "
                f"then .export(path, formats={tuple(names)}): it reads this search's trials, "
                f"checks each export against the ensemble's predictions, and writes a float32 "
                f"copy where ONNX or LiteRT does not take the models' 16-bit precision."
            )
        check_formats(asked, backend)
        if file.suffix != ".keras":
            file = file / EXPORT_NAME
        _refuse_an_outputs_folder(file.parent)
        fitted = self._fitted
        model = self.model()
        data = fitted.task.trial_data(fitted.data_folder, fitted.members[0].trial.params)
        precisions = {m.trial.user_attrs.get(Attr.PRECISION) for m in fitted.members}
        if isinstance(fitted, FittedRegression):
            expected, slope = fitted.blend(fitted.val_matrix), None
        else:
            expected = fitted.choice.predict(fitted.val_matrix)
            slope = temperature_slope(fitted.choice.blend(fitted.val_matrix), self.temperature)
        x_val = np.asarray(data.x_val)
        allowed = max(tolerance(p) for p in precisions)
        reference = Reference(x_val, None, np.asarray(fitted.y_val), expected, allowed, slope)
        served = asked - {Format.KERAS}
        check_servable(model, served, reference)
        # Written beside the folder's own files and moved in once all are checked: an export
        # that fails leaves the folder as it was.
        made = not file.parent.exists()
        file.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_for(file)
        staging.mkdir()
        try:
            written = []
            if Format.KERAS in asked:
                model.save(staging / file.name)
                written.append(file.name)
                try:
                    check_export(staging / file.name, x_val, fitted.y_val, expected, allowed, slope)
                except HpoError as exc:
                    raise HpoError(
                        f"{str(exc).replace(str(staging / file.name), str(file))}: the members "
                        f"no longer predict what they did in their trials (their stored "
                        f"validation predictions). The likeliest cause is a layer or model class "
                        f"of yours whose code changed since they trained (a notebook cell run "
                        f"again, %autoreload): search it in a new project_name, or run this "
                        f"where the class is as the trials had it."
                    ) from exc
            if served:
                entries = write_exports(model, staging, served, reference, file.parent)
                written += [entry["path"] for entry in entries.values()]
            for name in written:
                publish(staging / name, file.parent / name)
        except BaseException:
            if made:
                shutil.rmtree(file.parent, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return file if Format.KERAS in asked else file.parent

    def model(self) -> keras.Model:
        """The ensemble as one Keras model, from the search's inputs to probabilities (or
        predicted targets)."""
        return self._fitted.export()

    def _inputs(self, x: Any) -> np.ndarray:
        from hpo.data.in_memory import input_array, is_dataset, read_inputs
        from hpo.data.inputs import describe, given_as_list, input_specs, packed

        if is_dataset(x):
            x = read_inputs(x, "x")
        expected = self._fitted.task.trial_data(
            self._fitted.data_folder, self._fitted.members[0].trial.params
        ).x_train
        if isinstance(x, Mapping) and given_as_list(expected):
            # A search given a list, asked by the names the models give their inputs (which
            # the export takes, from the members it holds): in the models' order.
            names = input_names(self._weighted_models)
            if names is not None and set(x) == set(names):
                x = [x[name] for name in names]
        examples = None  # a list of arrays: the search's several inputs, or else rows
        if isinstance(x, (list, tuple)) and x and getattr(x[0], "ndim", 0) > 0:
            examples = len(x[0]) if packed(expected) else len(x)
        inputs = input_array(x, "x", examples)
        if len(inputs) == 0:  # Keras's own predict: an UnboundLocalError
            raise DataError("x holds no examples; give at least one to predict or evaluate.")
        # The same inputs (one, or the same names), each of the same shape per example.
        shapes = [[(n, shape) for n, shape, _ in input_specs(a)] for a in (inputs, expected)]
        if shapes[0] != shapes[1]:
            raise DataError(
                f"inputs of {describe(inputs)} per example; the search's were "
                f"{describe(expected)}. Prepare them as the search's inputs were."
            )
        # The search's types, text as wide as it is here: the training texts' width would cut
        # a longer one (the exported model reads it whole).
        return inputs.astype(_widened(expected.dtype, inputs.dtype), copy=False)


def _widened(expected: np.dtype, given: np.dtype) -> np.dtype:
    """`expected` (the search's inputs' type) with each text input (UTF-8 bytes) at least as
    wide as in `given`, by name for several inputs, so that casting to it cuts no text."""

    def wider(base: np.dtype, other: np.dtype | None) -> np.dtype:
        if other is not None and base.kind == other.kind == "S":
            return other if other.itemsize > base.itemsize else base
        return base

    if expected.names is None:
        return wider(expected, given if given.names is None else None)
    fields: Mapping[str, tuple[Any, ...]] = expected.fields or {}
    others: Mapping[str, tuple[Any, ...]] = given.fields or {}
    formats, titles = [], []
    for name in expected.names:
        field = fields[name]
        other = others.get(name)
        base = wider(field[0].base, other[0].base if other else None)
        formats.append((base, field[0].shape) if field[0].shape else base)
        titles.append(field[2] if len(field) > 2 else None)
    return np.dtype({"names": list(expected.names), "formats": formats, "titles": titles})


def _refuse_an_outputs_folder(folder: Path) -> None:
    """Refuses to export into the folder of an `hpo ensemble`, `hpo export` or `hpo distill`
    output: its report.json records its files' checksums, and an export there replaced its
    `ensemble.keras`, which hpo then refused as changed.

    Raises:
        ConfigError: Names the folder and the way out.
    """
    if (folder / "report.json").is_file():
        raise ConfigError(
            f"{folder} holds an hpo command's output (its report.json records the checksums of "
            f"its files), and an export there would replace them. Export to another folder "
            f"(e.g. {folder.parent / 'my-ensemble'}), or to a .keras file elsewhere."
        )
