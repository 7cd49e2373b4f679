"""Saving and loading explainers: safetensors + JSON, tamper-evident, written atomically, never pickled.

A saved explainer is a folder of two files::

    config.json          format and version, explainer class, hyper-parameters, fit_report_, class
                         mapping, library versions, and the fingerprints below
    state.safetensors    the fitted arrays (training features, labels, the method's ``*_`` arrays)

``fingerprints`` in ``config.json`` holds a content hash of every fitted array, of each part of the
model (a network's every parameter and buffer, a booster's trees, the head), and of each other
entry of the config (parameters, fit report, classes, versions). :func:`load` recomputes them all
and refuses (:class:`~representer.errors.StaleStateError`) any difference, naming what differs:
another model, an edited array, an edited parameter. This is tamper-*evident*, not a signature: it
catches a stale model, a damaged file and a hand edit, not a forger who recomputes the hashes.

The folder is written by :func:`representer._atomic.staged_dir` (a temporary sibling folder that then
replaces it as a whole), so a save that is killed or runs out of disk leaves the previous save
loadable. :data:`FORMAT_VERSION` is ``(major, minor)``; a file with a newer major version is refused
with :class:`~representer.errors.FileFormatError`, a newer minor version is read.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import __version__
from .._atomic import staged_dir
from ..classes import ClassMapping
from ..errors import FileFormatError, InputError, StaleStateError
from ..fullmodel.measurement import Measurement
from .._files import array_fingerprint
from .._saved_format import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    HASHED_ENTRIES,
    STATE_FILE,
    json_fingerprint,
)

if TYPE_CHECKING:
    from .base import Explainer

def save_explainer(explainer: Explainer, path: str | Path) -> Path:
    """Write ``explainer`` (fitted) to the folder ``path``, replacing a previous save there as a whole."""
    from safetensors.numpy import save_file

    folder = Path(path)
    check_replaceable(folder, "path")
    arrays = {name: np.ascontiguousarray(value) for name, value in explainer.state_arrays().items()}
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": ".".join(map(str, FORMAT_VERSION)),
        "class": type(explainer).__name__,
        "params": jsonable(explainer.get_params()),
        "fit_report_": jsonable(getattr(explainer, "fit_report_", {})),
        "classes": explainer.classes_.to_dict(),
        "versions": versions(),
    }
    config["fingerprints"] = {
        "entries": {key: json_fingerprint(config[key]) for key in HASHED_ENTRIES},
        "arrays": {name: array_fingerprint(value) for name, value in arrays.items()},
        "model": explainer.model_.parameter_hashes(),
    }
    config["digest"] = json_fingerprint(config["fingerprints"])
    with staged_dir(folder) as stage:
        save_file(arrays, str(stage / STATE_FILE))
        (stage / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def check_replaceable(folder: Path, argument: str) -> None:
    """Refuse to save over anything but a missing folder, an empty one or a previous save."""
    if folder.is_symlink():
        raise InputError(f"`{argument}` {folder} is a symbolic link; pass the folder itself (nothing is written through links).")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"`{argument}` {folder} is a file; pass a folder (it is created if missing).")
    if folder.is_dir():
        ours = (CONFIG_FILE,) * _is_saved_config(folder / CONFIG_FILE) + (STATE_FILE,)
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in ours)
        if foreign:
            raise InputError(
                f"`{argument}` {folder} holds other files ({', '.join(foreign[:5])}{', …' if len(foreign) > 5 else ''}); "
                "a save replaces its folder as a whole, so save into a new or empty folder, or over a previous save."
            )


def _is_saved_config(file: Path) -> bool:
    """Whether ``file`` is missing or the configuration of a saved explainer (not a user's own config.json)."""
    if not file.exists():
        return True
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and (config.get("format") == FORMAT or {"class", "params"} <= set(config))



def read_state(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of ``state.safetensors``; a missing or damaged file raises :class:`FileFormatError`."""
    from safetensors.numpy import load_file

    file = folder / STATE_FILE
    if not file.is_file():
        raise FileFormatError(f"{folder} has {CONFIG_FILE} but no {STATE_FILE}; the save is incomplete: save it again.")
    try:
        return load_file(str(file))
    except Exception as exc:  # safetensors raises SafetensorError and others for a damaged file
        raise FileFormatError(f"Cannot read {file} ({type(exc).__name__}: {exc}); the file is damaged: save it again.") from exc


class ModelChangedError(StaleStateError):
    """The model given to :func:`~representer.load` is not the one the explainer was fitted on.

    ``parts`` names the differing parameters and buffers, e.g. ``"0.weight; 1 of 4 parts"``.
    """

    def __init__(self, message: str, parts: str) -> None:
        super().__init__(message)
        self.parts = parts


def check_model(config: dict[str, Any], adapter: Any) -> None:
    """Refuse an adapter whose parameter hashes differ from those saved (:class:`ModelChangedError`)."""
    saved: dict[str, str] = config["fingerprints"]["model"]
    current = adapter.parameter_hashes()
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differ:
        shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        parts = f"{shown}; {len(differ)} of {len(saved)} parts"
        raise ModelChangedError(
            f"The saved explainer was fitted on a different model (different parameters: {parts}). Load it with the "
            "model it was fitted on, or fit it again on this one.",
            parts,
        )


def check_arrays(config: dict[str, Any], arrays: dict[str, np.ndarray], folder: Path) -> None:
    """Refuse arrays that are missing, extra, or differ from their saved fingerprints."""
    saved: dict[str, str] = config["fingerprints"]["arrays"]
    missing, extra = sorted(set(saved) - set(arrays)), sorted(set(arrays) - set(saved))
    changed = sorted(k for k in set(saved) & set(arrays) if array_fingerprint(arrays[k]) != saved[k])
    if missing or extra or changed:
        parts = [f"{label}: {', '.join(names)}" for label, names in (("changed", changed), ("missing", missing), ("unexpected", extra)) if names]
        raise StaleStateError(
            f"{folder / STATE_FILE} does not match the fingerprints in {CONFIG_FILE} ({'; '.join(parts)}): the arrays were "
            "edited, damaged, or come from another save. Fit and save the explainer again."
        )


def check_classes(saved: ClassMapping, class_names: Any) -> None:
    """Refuse ``class_names`` (when given to ``load``) that differ from the saved class mapping."""
    if class_names is None:
        return
    given = tuple(class_names)
    if given != saved.names:
        raise StaleStateError(
            f"`class_names` {list(given)[:6]} differ from the class names the explainer was fitted with "
            f"{list(saved.names)[:6]}; class ids would mean other classes. Pass the saved names, or fit again."
        )



def versions() -> dict[str, str]:
    """Versions of representer, torch, numpy and Python."""
    return {"representer": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and dict keys made JSON-ready; a measurement becomes its name."""
    if isinstance(value, Measurement):
        return value.name
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


