"""The saved explainer's ``config.json``: its format and the checks on reading it (no torch).

:mod:`representer.methods.persistence` writes and loads whole saves; the command line's light
commands read a run's configuration through this module without importing the methods.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import __version__
from ._files import read_json
from .errors import FileFormatError, RepresenterError, StaleStateError

CONFIG_FILE = "config.json"
STATE_FILE = "state.safetensors"
FORMAT = "representer.explainer"
FORMAT_VERSION = (2, 0)
#: Config entries covered by a fingerprint (besides the arrays and the model).
HASHED_ENTRIES = ("class", "params", "fit_report_", "classes", "versions")


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a saved explainer, refused if missing, damaged or of a newer major format."""
    file = folder / CONFIG_FILE
    if not file.is_file():
        raise RepresenterError(f"No saved explainer at {folder} (missing {CONFIG_FILE}); save one with `explainer.save(path)`.")
    config = read_json(file, "the saved explainer's configuration")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise FileFormatError(
            f"{file} is not the configuration of a saved explainer of this format (it lacks \"format\": \"{FORMAT}\"); "
            "it was saved by an older representer without fingerprints, or is another file: fit and save the explainer again."
        )
    version = parse_version(config.get("format_version"), file)
    if version[0] > FORMAT_VERSION[0]:
        saved_by = config.get("versions", {}).get("representer", "a newer version")
        raise FileFormatError(
            f"{file} was saved by representer {saved_by} in format {version[0]}.{version[1]}, which this representer "
            f"({__version__}, format {FORMAT_VERSION[0]}.x) cannot read; upgrade representer, or fit the explainer again."
        )
    fingerprints = config.get("fingerprints")
    missing = [key for key in HASHED_ENTRIES if key not in config]
    if not isinstance(fingerprints, dict) or not all(isinstance(fingerprints.get(k), dict) for k in ("entries", "arrays", "model")):
        missing.append("fingerprints")
    if missing:
        raise FileFormatError(f"{file} lacks {missing}; the file is damaged: fit and save the explainer again.")
    edited = [key for key in HASHED_ENTRIES if json_fingerprint(config[key]) != fingerprints["entries"].get(key)]
    if edited:
        raise StaleStateError(
            f"{file}: {', '.join(f'`{k}`' for k in edited)} no longer match{'es' if len(edited) == 1 else ''} the fingerprint "
            "written at save time (edited or damaged since); fit and save the explainer again instead of editing it."
        )
    return config


def json_fingerprint(value: Any) -> str:
    """A short hash of a JSON-ready value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def parse_version(text: Any, file: Path) -> tuple[int, int]:
    """``"major.minor"`` of a saved file as two integers (a damaged one raises :class:`FileFormatError`)."""
    try:
        major, minor = (int(part) for part in str(text).split("."))
    except ValueError as exc:
        raise FileFormatError(f"{file} has an unreadable format_version {text!r}; the file is damaged: save it again.") from exc
    return major, minor
