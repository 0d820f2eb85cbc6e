"""Imported first by the trial fork server: sends its stderr to /dev/null unless HPO_VERBOSE=1.

The fork server imports TensorFlow once for every trial, and TensorFlow's C++ libraries print
their start-up notices straight to file descriptor 2. Trial processes forked from the server send
their output to their own log files (`hpo.training.isolation`), so nothing of theirs is lost here
but the error of one that dies before it opens its log, which the server keeps for the process
waiting for it (`hpo.training.start_errors`).
"""

from __future__ import annotations

import os

from hpo._env import VERBOSE_VAR, env_flag
from hpo.errors import ConfigError
from hpo.training.start_errors import keep_start_errors

try:
    _verbose = env_flag(VERBOSE_VAR)
except ConfigError:  # the command that started this server refused it already
    _verbose = False
if not _verbose:
    _devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(_devnull, 2)
    os.close(_devnull)
keep_start_errors()
