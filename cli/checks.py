"""Checks of command-line input shared by the subcommands, all made before anything is written.

A bad argument ends the command with one line naming it and exit code 2
(:func:`connectofly.cli.main.main`), and leaves no file or folder behind:

* numbers: argparse types (:data:`positive_int`, :data:`non_negative_int`,
  :data:`positive_float`, :data:`non_negative_float`) refuse them while the
  arguments are parsed, and refuse NaN and infinity;
* run names: :func:`run_name` (an argparse type) refuses paths, so that a run
  stays inside its output folder;
* output folders: :func:`check_folder` refuses one that could not be made or
  written (a file in its place or above it, no write permission);
* input files: :func:`check_npz` refuses one that is missing, not an ``.npz``,
  or cut short or damaged; :func:`check_lobe` an optic-lobe choice that cannot
  be loaded.
"""

from __future__ import annotations

import argparse
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"  # how every .npz (a zip archive of .npy files) begins


def _number_type(convert: Callable[[str], float], accept: Callable[[float], bool], requirement: str):
    """An argparse type: ``convert`` the text, then refuse values that are not finite or not ``accept``-ed."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {requirement}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


positive_int = _number_type(int, lambda n: n > 0, "a whole number above 0")
non_negative_int = _number_type(int, lambda n: n >= 0, "a whole number, 0 or more")
positive_float = _number_type(float, lambda x: x > 0, "a finite number above 0")
non_negative_float = _number_type(float, lambda x: x >= 0, "a finite number, 0 or more")


def run_name(text: str) -> str:
    """An argparse type: a run's folder name, one path component (no separators, not ``.`` or ``..``)."""
    if text in ("", ".", "..") or Path(text).name != text or (os.altsep and os.altsep in text):
        raise argparse.ArgumentTypeError(f"{text!r} must be a plain folder name, without path separators or '..'")
    return text


def check_folder(path: Path, flag: str) -> Path:
    """``path``, after checking that it is a folder that can be written, or can be made; writes nothing.

    Raises:
        ValueError: naming ``flag``, when ``path`` or a folder above it is a file,
            or the nearest existing folder cannot be written.
    """
    try:
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise ValueError(f"{flag} {path}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: {existing} is not writable")
    except OSError as error:  # e.g. a folder above it that cannot be searched
        raise ValueError(f"{flag} {path}: {error.strerror or error}") from None
    return path


def check_npz(path: str | Path, flag: str) -> Path:
    """``path``, after reading every array in it, so that it is known to be a whole ``.npz``.

    Raises:
        ValueError: naming ``flag``, when the file is missing, is not an ``.npz``
            (e.g. text, or a lone ``.npy``), or is cut short or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{flag} {path}: no such file")
    with path.open("rb") as file:
        if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ValueError(f"{flag} {path}: not an .npz file (numpy's zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            for name in arrays.files:
                arrays[name]
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as error:
        raise ValueError(f"{flag} {path}: a cut-short or damaged .npz file ({error})") from None
    return path


def check_lobe(lobe: str, flag: str):
    """The optic-lobe parameters ``lobe`` names (``"trained"``, ``"untrained"``, a
    ``trainable.npz``, a flyvis checkpoint or model folder), loaded once to check them.

    Raises:
        ValueError: naming ``flag``, when they cannot be loaded.
    """
    from connectofly.agents.optic_lobe_vision import LOBE_CHOICES, lobe_parameters
    from connectofly.circuits.flyvis_checkpoint import is_flyvis_checkpoint

    if lobe not in LOBE_CHOICES and not is_flyvis_checkpoint(lobe):
        check_npz(lobe, flag)
    try:
        return lobe_parameters(lobe)
    except ValueError as error:
        raise ValueError(f"{flag} {error}") from None


def check_readout(path: str | Path, flag: str) -> Path:
    """``path``, after checking that it is a whole ``.npz`` holding a descending readout that fits
    the connectome agent (its output types, regions and optic-lobe parameters).

    Raises:
        ValueError: naming ``flag``, as :func:`check_npz` does, or when the file holds no
            readout or one that does not fit.
    """
    from connectofly.agents.connectome import load_readout, readout_lobe
    from connectofly.circuits.optic_lobe import read_spec

    check_npz(path, flag)
    try:
        load_readout(path, read_spec().output_types)
        readout_lobe(path)
    except KeyError as error:
        raise ValueError(f"{flag} {path}: not a readout ({error.args[0]})") from None
    except ValueError as error:
        raise ValueError(f"{flag} {error}") from None
    return Path(path)
