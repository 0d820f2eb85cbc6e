"""Data sets: locating, reading, splitting, and the tokenized cache."""

from __future__ import annotations
