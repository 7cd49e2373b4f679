"""Record a few checkpoints of a training run, for rankings that see past memorisation.

A network trained until it fits its training labels fits the wrong ones too, and its final weights
no longer tell them apart. Its *trajectory* does: early in training the mislabelled points are the
ones the network cannot fit yet. :class:`CheckpointRecorder` keeps that trajectory cheaply, inside
any training loop (plain PyTorch, Lightning, a Hugging Face ``Trainer`` callback …)::

    recorder = rp.CheckpointRecorder("checkpoints")
    for epoch in range(1, epochs + 1):
        train_one_epoch(net, optimizer)
        recorder.save(net, epoch=epoch, learning_rate=optimizer.param_groups[0]["lr"])

    issues = rp.find_label_issues(net.eval(), X_train, y_train, checkpoints="checkpoints")

**What is kept.** ``save`` writes the network's ``state_dict`` (or only the parameters named by
``params``) to ``checkpoint-<epoch>.safetensors`` and records its epoch, learning rate and SHA-256
in ``checkpoints.json``; both are written atomically, so a run killed mid-save leaves the recorded
checkpoints intact. With ``schedule="log"`` (default) only epochs ``1, 2, 3, 4, 6, 8, 11, 16, 23, 32,
45, 64, …`` (``round(√2^k)``) are written: about ``2 log₂ E`` files for ``E`` epochs, dense early,
where the signal is (spec/label-issues.md); ``schedule="every"`` writes every call.

**What it is for.** :func:`representer.find_label_issues` averages each training point's loss on
its given label over the checkpoints (averaged over log-spaced epochs, :func:`log_grid_weights`), and
:class:`~representer.TracInCP` takes the same checkpoints and learning rates.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from . import _atomic
from .errors import InputError, StaleStateError

INDEX_FILE = "checkpoints.json"
FORMAT = 1
Schedule = Literal["log", "every"]
_SCHEDULES = ("log", "every")


def log_schedule_epochs(last: int) -> list[int]:
    """The epochs ``round(√2^k)`` up to ``last``: 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, …"""
    epochs: list[int] = []
    k = 0
    while (e := round(math.sqrt(2) ** k)) <= last:
        if e not in epochs:
            epochs.append(e)
        k += 1
    return epochs


def _on_log_schedule(epoch: int) -> bool:
    return epoch in log_schedule_epochs(epoch)


def log_grid_weights(epochs: Sequence[int]) -> np.ndarray:
    """Weights of checkpoints at ``epochs`` (strictly increasing, ≥ 0) for an average over log-spaced epochs.

    The grid is the log schedule up to the last checkpoint, ``G = {1, 2, 3, 4, 6, 8, 11, …} ∪ {e_C}``
    (:func:`log_schedule_epochs`). Each grid epoch is represented by the recorded checkpoint nearest
    to it in ``log`` epoch, and a checkpoint's weight is the share of grid epochs it represents. So
    a recording made on the log schedule is averaged uniformly, one made every epoch is averaged
    over its log-spaced epochs (the early, pre-memorisation epochs keep their weight however many
    late ones follow), and a sparse one gives its earliest checkpoint the early grid epochs. A
    checkpoint of the initial weights (epoch 0) represents no grid epoch. Sums to 1.
    """
    e = np.asarray(epochs, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or np.any(e < 0) or np.any(np.diff(e) <= 0) or e[-1] < 1:
        raise InputError(
            f"checkpoint epochs must be non-negative, strictly increasing and reach at least 1; got {list(epochs)}."
        )
    trained = np.flatnonzero(e >= 1)
    grid = np.array(sorted(set(log_schedule_epochs(int(e[-1]))) | {int(e[-1])}), dtype=np.float64)
    nearest = trained[np.abs(np.log(grid)[:, None] - np.log(e[trained])[None, :]).argmin(axis=1)]
    return np.bincount(nearest, minlength=e.size) / grid.size


@dataclass(frozen=True)
class Checkpoint:
    """One recorded state of the network.

    Attributes
    ----------
    state : mapping of str to Tensor
        Parameter (and buffer) name → tensor, as in ``state_dict()``.
    epoch : int
        Completed training epochs when it was taken (0 = the initial weights).
    learning_rate : float
        The learning rate in force for the epochs that led to it (TracIn's ``η``).
    """

    state: Mapping[str, torch.Tensor]
    epoch: int
    learning_rate: float


class CheckpointRecorder:
    """Save a few checkpoints of a training loop to a folder (safetensors + ``checkpoints.json``).

    Call :meth:`save` after each epoch with the epoch count (1-based) and the learning rate.

    Parameters
    ----------
    folder : str or Path
        Where the checkpoints go (created if needed).
    schedule : {"log", "every"}, default "log"
        ``"log"``: write only epochs ``round(√2^k)`` (1, 2, 3, 4, 6, 8, 11, …); ``"every"``: every call.
    params : list of str, optional
        Names or prefixes of the parameters to keep (e.g. ``["classifier"]``); default: the whole
        ``state_dict`` (needed for the trajectory ranking, which runs the network).
    overwrite : bool, default False
        A folder that already holds a recording is refused unless ``True`` (then its recording is
        replaced by this one).

    Raises
    ------
    InputError
        An unknown ``schedule``, ``params`` that are not names, or a folder holding a recording without ``overwrite``.
    """

    def __init__(self, folder: str | Path, *, schedule: Schedule = "log", params: Sequence[str] | None = None,
                 overwrite: bool = False) -> None:
        if schedule not in _SCHEDULES:
            raise InputError(f"`schedule` must be one of {_SCHEDULES}; got {schedule!r}.")
        if params is not None and (isinstance(params, str) or not all(isinstance(p, str) and p for p in params)):
            raise InputError(f"`params` must be a list of parameter names or prefixes; got {params!r}.")
        self.folder = Path(folder)
        self.schedule = schedule
        self.params = None if params is None else list(params)
        index = self.folder / INDEX_FILE
        if index.exists() and not overwrite:
            raise InputError(
                f"{self.folder} already holds a recording ({INDEX_FILE}); pass overwrite=True to replace it, or "
                "record into a new folder."
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("checkpoint-*.safetensors"):
            stale.unlink()
        self._entries: list[dict[str, Any]] = []
        self._write_index()

    def __len__(self) -> int:
        return len(self._entries)

    def wants(self, epoch: int) -> bool:
        """Whether :meth:`save` at ``epoch`` writes a checkpoint under the schedule.

        Parameters
        ----------
        epoch : int
            Completed epochs.

        Returns
        -------
        bool
        """
        return self.schedule == "every" or _on_log_schedule(int(epoch))

    def save(self, model: nn.Module, *, epoch: int, learning_rate: float, force: bool = False) -> Path | None:
        """Record ``model``'s state after ``epoch`` completed epochs (written atomically, hashed in the index).

        Parameters
        ----------
        model : nn.Module
            The network being trained.
        epoch : int
            Completed epochs (0 = the initial weights); must increase between calls.
        learning_rate : float
            The learning rate of the epochs that led here (> 0).
        force : bool, default False
            Write off-schedule too (e.g. the last epoch).

        Returns
        -------
        Path or None
            The checkpoint file, or ``None`` when the schedule skips ``epoch``.

        Raises
        ------
        InputError
            ``model`` not an ``nn.Module``, an ``epoch`` that is not a non-negative integer or does not
            increase, a ``learning_rate`` that is not positive, or ``params`` matching nothing.
        OutputError
            The checkpoint cannot be written (the recording so far is kept).
        """
        from safetensors.torch import save_file

        if not isinstance(model, nn.Module):
            raise InputError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
        if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
            raise InputError(f"`epoch` must be a non-negative integer (completed epochs); got {epoch!r}.")
        lr = float(learning_rate)
        if not math.isfinite(lr) or lr <= 0:
            raise InputError(f"`learning_rate` must be a positive number; got {learning_rate!r}.")
        epoch = int(epoch)
        if self._entries and epoch <= self._entries[-1]["epoch"]:
            raise InputError(f"`epoch` must increase between saves; got {epoch} after {self._entries[-1]['epoch']}.")
        if not (force or self.wants(epoch)):
            return None
        state = {name: t.detach().to("cpu").contiguous().clone() for name, t in model.state_dict().items() if self._keeps(name)}
        if not state:
            raise InputError(f"`params={self.params}` matches no entry of the model's state_dict.")
        path = self.folder / f"checkpoint-{epoch:06d}.safetensors"
        _atomic.write_with(path, lambda name: save_file(state, name, metadata={"epoch": str(epoch), "learning_rate": repr(lr)}))
        self._entries.append({"file": path.name, "epoch": epoch, "learning_rate": lr, "sha256": _sha256(path)})
        self._write_index()
        return path

    def _keeps(self, name: str) -> bool:
        return self.params is None or any(name == p or name.startswith(p + ".") for p in self.params)

    def _write_index(self) -> None:
        from . import __version__

        record = {"format": FORMAT, "representer": __version__, "schedule": self.schedule, "params": self.params,
                  "checkpoints": self._entries}
        _atomic.write_text(self.folder / INDEX_FILE, json.dumps(record, indent=2))


def load_checkpoints(folder: str | Path) -> list[Checkpoint]:
    """Read a recording written by :class:`CheckpointRecorder`, oldest first, checking every file's hash.

    Parameters
    ----------
    folder : str or Path
        The recorder's folder.

    Returns
    -------
    list of Checkpoint
        In training order.

    Raises
    ------
    InputError
        A folder without a recording, or with no checkpoints yet.
    StaleStateError
        A file that is missing or changed since it was recorded, or a damaged or newer index.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / INDEX_FILE
    if not index.is_file():
        raise InputError(f"{folder} holds no checkpoint recording (no {INDEX_FILE}); record one with rp.CheckpointRecorder.")
    try:
        record = json.loads(index.read_text())
        entries = list(record["checkpoints"])
        fmt = int(record["format"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StaleStateError(f"{index} is damaged ({exc}); record the checkpoints again.") from exc
    if fmt > FORMAT:
        raise StaleStateError(f"{index} was written by a newer representer (format {fmt}); upgrade representer to read it.")
    if not entries:
        raise InputError(f"{folder} holds no checkpoints yet: call recorder.save(...) during training.")
    checkpoints = []
    for entry in entries:
        path = folder / entry["file"]
        if not path.is_file():
            raise StaleStateError(f"Checkpoint {path} listed in {INDEX_FILE} is missing; record the checkpoints again.")
        if _sha256(path) != entry["sha256"]:
            raise StaleStateError(f"Checkpoint {path} changed since it was recorded (its SHA-256 differs); record again.")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise StaleStateError(f"Checkpoint {path} cannot be read ({exc}); record the checkpoints again.") from exc
        checkpoints.append(Checkpoint(state=state, epoch=int(entry["epoch"]), learning_rate=float(entry["learning_rate"])))
    return checkpoints


def as_checkpoints(checkpoints: Any, learning_rates: Sequence[float] | None = None) -> list[Checkpoint]:
    """Normalise what a user passes as ``checkpoints``: a recording folder, ``Checkpoint`` s or state dicts.

    Plain state dicts are taken as epochs ``1, 2, …`` in the order given, with ``learning_rates``
    (one per checkpoint; default 1.0 each, which only TracIn's weighting uses).
    """
    if isinstance(checkpoints, (str, Path)):
        if learning_rates is not None:
            raise InputError("`learning_rates` are read from the recording folder; do not pass them with a folder.")
        return load_checkpoints(checkpoints)
    if isinstance(checkpoints, Mapping) or not isinstance(checkpoints, Sequence) or len(checkpoints) == 0:
        raise InputError(
            "`checkpoints` must be a folder written by rp.CheckpointRecorder, or a non-empty list of state dicts "
            f"(or rp.Checkpoint); got {type(checkpoints).__name__}."
        )
    if all(isinstance(c, Checkpoint) for c in checkpoints):
        if learning_rates is not None:
            raise InputError("`learning_rates` come with each rp.Checkpoint; do not pass them separately.")
        items = list(checkpoints)
    elif all(isinstance(c, Mapping) for c in checkpoints):
        rates = [1.0] * len(checkpoints) if learning_rates is None else list(learning_rates)
        if len(rates) != len(checkpoints):
            raise InputError(f"Pass one learning rate per checkpoint: got {len(checkpoints)} checkpoints and {len(rates)} learning rates.")
        for lr in rates:
            if not (isinstance(lr, (int, float, np.floating)) and math.isfinite(float(lr)) and float(lr) > 0):
                raise InputError(f"every learning rate must be a positive number; got {lr!r}.")
        items = [Checkpoint(state=dict(c), epoch=k + 1, learning_rate=float(lr)) for k, (c, lr) in enumerate(zip(checkpoints, rates))]
    else:
        raise InputError("`checkpoints` must all be state dicts or all rp.Checkpoint objects.")
    epochs = [c.epoch for c in items]
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise InputError(f"checkpoints must be in training order (increasing epochs); got epochs {epochs}.")
    return items


def check_architecture(model: nn.Module, checkpoint: Checkpoint, *, full: bool) -> None:
    """Refuse a checkpoint whose names or shapes do not fit ``model`` (``full``: it must cover every entry)."""
    own = model.state_dict()
    unknown = [k for k in checkpoint.state if k not in own]
    if unknown:
        raise InputError(
            f"The checkpoint of epoch {checkpoint.epoch} has entries the model lacks ({unknown[:3]}): it was recorded "
            "from another architecture."
        )
    wrong = [k for k, v in checkpoint.state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise InputError(
            f"The checkpoint of epoch {checkpoint.epoch} does not fit the model: `{k}` has shape "
            f"{tuple(checkpoint.state[k].shape)} there and {tuple(own[k].shape)} in the model (another architecture)."
        )
    if full:
        missing = [k for k in own if k not in checkpoint.state]
        if missing:
            raise InputError(
                f"The checkpoint of epoch {checkpoint.epoch} lacks {missing[:3]}: the trajectory ranking runs the whole "
                "network at each checkpoint, so record full state dicts (CheckpointRecorder without `params`)."
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
