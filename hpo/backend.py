"""How to train one trial: on which Keras backend (TensorFlow, JAX, PyTorch) and which device.

A study names its backend (`[training] backend`, else `$KERAS_BACKEND`, else TensorFlow) and
every process that loads Keras for it (the search, each trial, the ensemble, `hpo predict`) loads
it with that backend: Keras reads `KERAS_BACKEND` once, at its first import, so it is set before.
On JAX and PyTorch nothing here imports TensorFlow.

GPUs: each trial process sees the one GPU its worker was given (`CUDA_VISIBLE_DEVICES`), grows
its memory as it needs it (TensorFlow's memory growth; JAX without preallocating the device),
and `--trials-per-gpu N` gives each GPU N workers. A backend that compiles a graph per input
shape (JAX, and TensorFlow's XLA on a GPU) gets batches whose widths come from a small fixed set.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import shutil
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from hpo._env import VERBOSE_VAR, env_flag
from hpo.errors import ConfigError
from hpo.training.start_errors import START_ERRORS_VAR

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

__all__ = [
    "BACKEND_VAR",
    "Backend",
    "backend_environment",
    "callers_environment",
    "claim_backend",
    "compiles_per_shape",
    "configure_threads",
    "device_name",
    "given_backend_var",
    "gpu_assignment",
    "gpu_capability",
    "import_keras",
    "keras_backend",
    "recorded_backend",
    "resolve_backend",
    "use_backend",
    "visible_gpus",
]

_log = logging.getLogger(__name__)

BACKEND_VAR = "KERAS_BACKEND"


class Backend(enum.Enum):
    """The Keras backend a study trains on."""

    TENSORFLOW = "tensorflow"
    JAX = "jax"
    TORCH = "torch"


def resolve_backend(configured: Backend | None) -> Backend:
    """The study file's backend, else `$KERAS_BACKEND`, else TensorFlow.

    Raises:
        ConfigError: `$KERAS_BACKEND` names a backend hpo does not run on.
    """
    if configured is not None:
        return configured
    name = os.environ.get(BACKEND_VAR, "").strip().lower()
    if not name:
        return Backend.TENSORFLOW
    try:
        return Backend(name)
    except ValueError as exc:
        raise ConfigError(
            f"${BACKEND_VAR} must be one of {[b.value for b in Backend]}, got {name!r}. Unset "
            f"it, or set [training] backend in the study file."
        ) from exc


def keras_backend() -> str | None:
    """The backend Keras was loaded with in this process, or None if it is not loaded."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    return str(keras.config.backend())


def claim_backend(backend: Backend) -> None:
    """Makes Keras load `backend` in this process and its children, without loading it.

    Raises:
        ConfigError: Keras is already loaded here with another backend (see `use_backend`).
    """
    loaded = keras_backend()
    if loaded is not None and loaded != backend.value:
        raise ConfigError(
            f"this study trains on {backend.value}, but Keras is already loaded here with "
            f"{loaded}, and Keras cannot switch backends in a running process. Start a new "
            f"process with {BACKEND_VAR}={backend.value} (in a notebook: restart the kernel)."
        )
    if loaded is None and backend is not Backend.TENSORFLOW:  # Keras imports TensorFlow anyway
        _check_installed(backend)
    global _claimed
    _claimed = (given_backend_var() or None, backend.value)
    os.environ[BACKEND_VAR] = backend.value


def _check_installed(backend: Backend) -> None:
    """Raises ConfigError unless the backend's package is installed: the backend may be an
    ensemble's record (its report.json), and Keras would import a module of that name from the
    working directory (first on the import path of `python -m hpo...`) as readily."""
    import importlib.util

    from hpo.models.external import installed_package

    if installed_package(backend.value):
        return
    try:
        spec = importlib.util.find_spec(backend.value)
    except (ImportError, ValueError):
        spec = None
    where = (
        ""
        if spec is None or not spec.origin
        else f" (a {backend.value} at {spec.origin}, outside the installed packages, is never "
        f"imported: the working directory's, or a folder on the import path)"
    )
    raise ConfigError(
        f"this runs on Keras's {backend.value} backend, and {backend.value} is not installed "
        f"here{where}. Install it (pip install {backend.value}), or use another backend: "
        f"[training] backend in the study file or ${BACKEND_VAR} for a study; an ensemble "
        f"loads on the backend it was exported on."
    )


# What `claim_backend` last found in $KERAS_BACKEND and wrote over it, or None.
_claimed: tuple[str | None, str] | None = None


def given_backend_var() -> str:
    """$KERAS_BACKEND as the user set it (lower case; "" where unset): where it still holds the
    value hpo last wrote there, the value it held before."""
    given = os.environ.get(BACKEND_VAR)
    if _claimed is not None and given == _claimed[1]:
        given = _claimed[0]
    return (given or "").strip().lower()


def recorded_backend(recorded: object, configured: Backend | None) -> Backend:
    """The backend a study's search recorded in its configuration (a study's `hpo_config`),
    else the one configured now; studies from before backends were recorded used TensorFlow."""
    if isinstance(recorded, dict):
        training = recorded.get("training")
        if isinstance(training, dict):
            try:
                return Backend(training.get("backend", Backend.TENSORFLOW.value))
            except ValueError:
                pass
        return Backend.TENSORFLOW
    return resolve_backend(configured)


def use_backend(backend: Backend) -> None:
    """Makes this process load Keras with `backend`, and loads it (quietly).

    Raises:
        ConfigError: Keras is already loaded here with another backend (in a notebook, say),
            which Keras cannot switch.
    """
    loaded = keras_backend()
    claim_backend(backend)
    if loaded is None:
        import_keras()


def import_keras() -> ModuleType:
    """Keras, imported without TensorFlow's C++ start-up lines unless HPO_VERBOSE=1.

    On JAX and PyTorch, TensorFlow (where installed) is imported with it: Keras imports it on
    its first calls all the same (`set_random_seed`, `get_config`), which printed those lines
    from an export of a JAX or PyTorch study.
    """
    if "keras" not in sys.modules:
        import importlib.util

        from hpo.cli import quiet_tensorflow

        other = os.environ.get(BACKEND_VAR, Backend.TENSORFLOW.value) != Backend.TENSORFLOW.value
        with quiet_tensorflow(env_flag(VERBOSE_VAR)):
            import keras  # noqa: F401

            if other and importlib.util.find_spec("tensorflow") is not None:
                import tensorflow  # noqa: F401
    return sys.modules["keras"]


def backend_environment(
    backend: Backend, gpu: str | None = None, threads: int = 0
) -> dict[str, str]:
    """Environment variables of a trial process: its backend, its GPU and how it takes memory.

    Args:
        gpu: The GPU index it may use (`CUDA_VISIBLE_DEVICES`), or None to leave it as it is.
        threads: CPU threads it may use (0: the backend's default); JAX reads them from
            `XLA_FLAGS` when it starts, the others are set in the process.
    """
    env = {
        BACKEND_VAR: backend.value,
        # JAX takes 75% of a GPU at its start unless told not to; trials share GPUs.
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    if backend is Backend.JAX and threads == 1:
        env["XLA_FLAGS"] = jax_thread_flags(threads)
    return env


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set inside, restored after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        _put_back(saved)


# What hpo sets in its own process for the processes it starts, which read it as they start:
# Keras's backend (the fork server, spawned children, the user's modules a search imports),
# TensorFlow's C++ log level, and the folder where the fork server's children keep the error
# they died of while starting (`hpo.training.start_errors`).
_SET_FOR_CHILDREN = (BACKEND_VAR, "TF_CPP_MIN_LOG_LEVEL", START_ERRORS_VAR)


class _CallerEnvironment:
    """The caller's values of `_SET_FOR_CHILDREN`, kept while any call of the API runs (calls
    nest, and may run in several threads at once), put back when the last one returns."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.saved: dict[str, str | None] = {}
        self.tensorflow_level = logging.NOTSET

    def enter(self) -> None:
        with self.lock:
            if self.calls == 0:
                self.saved = {key: os.environ.get(key) for key in _SET_FOR_CHILDREN}
                # TensorFlow's retracing notices, as the CLI drops them without --verbose:
                # batches cut to their longest text come in many shapes, as intended.
                tensorflow = logging.getLogger("tensorflow")
                self.tensorflow_level = tensorflow.level
                tensorflow.setLevel(max(tensorflow.getEffectiveLevel(), logging.ERROR))
            self.calls += 1

    def leave(self) -> None:
        with self.lock:
            self.calls -= 1
            if self.calls == 0:
                _put_back(self.saved)
                logging.getLogger("tensorflow").setLevel(self.tensorflow_level)


_caller = _CallerEnvironment()


@contextlib.contextmanager
def callers_environment() -> Iterator[None]:
    """Leaves the caller's `os.environ` as it found it: what hpo sets for its processes while
    a search or an ensemble runs (`KERAS_BACKEND`, `TF_CPP_MIN_LOG_LEVEL`) is put back when
    it returns, so that the caller's own `import keras` and subprocesses see their own.

    Keras loaded here stays loaded, with its backend: `claim_backend` checks that on each call.
    """
    _caller.enter()
    try:
        yield
    finally:
        _caller.leave()


def _put_back(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def visible_gpus() -> list[str]:
    """Indices of the NVIDIA GPUs this process may use, without loading any framework.

    From `CUDA_VISIBLE_DEVICES` when it is set, else from `nvidia-smi -L`; none without either.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def gpu_assignment(gpus: list[str], trials_per_gpu: int, workers: int) -> list[str | None]:
    """The GPU each worker's trials see: `trials_per_gpu` workers per GPU, round the GPUs."""
    if not gpus:
        return [None] * workers
    return [gpus[(worker // trials_per_gpu) % len(gpus)] for worker in range(workers)]


def configure_threads(threads: int) -> None:
    """Limits the loaded backend to `threads` CPU threads (0 leaves its default)."""
    backend = keras_backend()
    if threads <= 0:
        return
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:
            # TensorFlow already ran (a script's top level that adapts a Normalization layer,
            # say, runs again in each trial's process): its settings are fixed; train as it is.
            _log.info("TensorFlow started before hpo set its threads (%s); left as they are", exc)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def jax_thread_flags(threads: int) -> str:
    """XLA flags that keep JAX's CPU work to one thread when a trial has one core (set before
    JAX starts); with more it keeps XLA's own thread pool."""
    flags = os.environ.get("XLA_FLAGS", "")
    if threads != 1:
        return flags
    return f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()


def gpu_capability() -> int | None:
    """Compute capability major version of the first GPU the loaded backend sees, or None."""
    backend = keras_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability")
        return int(capability[0]) if capability else 0
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        return int(str(getattr(gpus[0], "compute_capability", "0")).split(".")[0] or 0)
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.get_device_capability(0)[0])
    return None


def device_name() -> str:
    """`cpu`, or `gpu:<name>` for the first GPU the loaded backend sees (for calibration)."""
    backend = keras_backend()
    name = None
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        name = gpus[0].device_kind if gpus else None
    elif backend == "torch":
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
    return f"gpu:{name}" if name else "cpu"


def compiles_per_shape(backend: str | None, gpu: bool) -> bool:
    """Whether the backend compiles a new program for every new input shape.

    JAX always does (jit); Keras turns on TensorFlow's XLA on a GPU; PyTorch runs eagerly.
    """
    return backend == "jax" or (backend == "tensorflow" and gpu)
