"""On-disk train-side factors: memory-mapped ``.npy`` shards with a JSON manifest.

A :class:`FactorStore` is a folder holding the tensors of one bilinear kernel (``x`` and ``coef``
of a :class:`~representer.engine.CoefficientKernel`, ``v`` of a ``ClassFactorKernel``, ``x`` and
``r`` of a ``GradientKernel`` / ``KroneckerKernel``, and the optional per-point ``scale``), all
row-indexed by training point and cut into shards of ``shard_rows`` rows::

    manifest.json          kind, n, shard_rows, dtype, per-array row shapes, source fingerprint
    x-00000.npy ...        one .npy file per array and shard (read back with mmap)
    shard-00000.json       written last, after the shard's arrays: row range and a blake2b
                           checksum of every file of the shard

A shard counts as written only when its record exists and every checksum matches, so a fit that
writes shards (:func:`write_factors`) can be interrupted at any point and resumed: valid shards
are skipped, a torn or corrupted one is recomputed. Files are written to a temporary name and
renamed, and each shard has its own record, so several workers may write different shards of the
same store at once. Resuming with a different kernel kind, shape, dtype, shard size or source
``fingerprint`` is refused (:class:`~representer.errors.StaleStateError`), and so is opening a
store whose files do not match their checksums.

:class:`StoreKernel` is a kernel backed by a store: ``block(test, start, stop)`` reads rows
``start:stop`` from the memory maps and scores them with the in-memory kernel of the same kind, so
the scoring engine (which only calls ``block`` and ``n``) streams a training set larger than memory
from disk, unchanged. :func:`kernel_rows` slices any kernel (in memory or on disk) to a row range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, RepresenterError, StaleStateError
from .._files import array_fingerprint
from .kernels import BilinearKernel, ClassFactorKernel, CoefficientKernel, GradientKernel, KroneckerKernel, TestFactors

FORMAT = "representer.factor-store/1"
ROW_KERNELS: dict[str, type[BilinearKernel]] = {
    cls.__name__: cls for cls in (CoefficientKernel, ClassFactorKernel, GradientKernel, KroneckerKernel)
}
_DTYPES = ("float32", "float64")
_HASH_CHUNK = 1 << 24


def kernel_kind(kernel: BilinearKernel) -> str:
    """The name of the row-indexed kernel class ``kernel`` is (or is backed by); refuse other kernels."""
    if isinstance(kernel, StoreKernel):
        return kernel.store.kind
    for name, cls in ROW_KERNELS.items():
        if isinstance(kernel, cls):
            return name
    raise InputError(
        f"A {type(kernel).__name__} has no row-indexed train-side tensors; only {', '.join(ROW_KERNELS)} "
        "(or a StoreKernel) can be sliced, stored, indexed or sharded."
    )


def kernel_arrays(kernel: BilinearKernel) -> dict[str, torch.Tensor]:
    """The row-indexed tensors of an in-memory kernel: its ``tensors()`` plus ``scale`` when set."""
    kernel_kind(kernel)
    arrays = dict(kernel.tensors())
    if kernel.scale is not None:
        arrays["scale"] = kernel.scale
    return arrays


def kernel_rows(kernel: BilinearKernel, start: int, stop: int, *, copy: bool = False) -> BilinearKernel:
    """The same kernel restricted to training rows ``start:stop`` (every tensor and ``scale`` sliced).

    In-memory kernels give views (``copy=True`` clones them, e.g. before pickling: a torch view
    pickles its whole storage); a :class:`StoreKernel` gives a store-backed view (nothing is read).
    """
    if not 0 <= start <= stop <= kernel.n:
        raise InputError(f"Row range {start}:{stop} is outside the kernel's {kernel.n} training rows.")
    if isinstance(kernel, StoreKernel):
        return kernel.view(start, stop)
    sliced = {name: value[start:stop] for name, value in kernel_arrays(kernel).items()}
    if copy:
        sliced = {name: value.clone() for name, value in sliced.items()}
    sliced.setdefault("scale", None)
    return dataclasses.replace(kernel, **sliced)


def _file_checksum(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FactorStore:
    """A folder of sharded, memory-mapped train-side kernel tensors (see the module docstring).

    Use :meth:`create_or_resume` to write (then :meth:`pending_shards` / :meth:`write_shard`, or
    simply :func:`write_factors`), :meth:`open` to read, :meth:`kernel` to score from disk.
    """

    def __init__(self, path: str | Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._maps: dict[tuple[str, int], np.ndarray] = {}

    # ------------------------------------------------------------------ layout
    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def n(self) -> int:
        return int(self.manifest["n"])

    @property
    def shard_rows(self) -> int:
        return int(self.manifest["shard_rows"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    @property
    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(shape) for name, shape in self.manifest["row_shapes"].items()}

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def n_shards(self) -> int:
        return -(-self.n // self.shard_rows)

    def shard_bounds(self, shard: int) -> tuple[int, int]:
        """Row range ``(start, stop)`` of ``shard``."""
        if not 0 <= shard < self.n_shards:
            raise InputError(f"`shard` must be in [0, {self.n_shards}); got {shard}.")
        start = shard * self.shard_rows
        return start, min(start + self.shard_rows, self.n)

    def _array_file(self, name: str, shard: int) -> Path:
        return self.path / f"{name}-{shard:05d}.npy"

    def _record_file(self, shard: int) -> Path:
        return self.path / f"shard-{shard:05d}.json"

    # ------------------------------------------------------------------ creating / opening
    @classmethod
    def create_or_resume(
        cls,
        path: str | Path,
        *,
        kind: str,
        n: int,
        row_shapes: Mapping[str, tuple[int, ...]],
        fingerprint: str,
        dtype: str = "float32",
        shard_rows: int = 65536,
    ) -> "FactorStore":
        """Start a store at ``path``, or reopen the one there if it was started with the same spec.

        Args:
            kind: the kernel class name (``"CoefficientKernel"`` ...), fixing which arrays it needs.
            n: number of training rows.
            row_shapes: shape of one row of each array, e.g. ``{"x": (D,), "coef": (K,)}``.
            fingerprint: identifies what the factors are computed from (model, data, method
                parameters); resuming a store written for another fingerprint is refused.
            dtype: ``"float32"`` or ``"float64"``, the dtype on disk.
            shard_rows: rows per shard file.
        """
        if kind not in ROW_KERNELS:
            raise InputError(f"`kind` must be one of {sorted(ROW_KERNELS)}; got {kind!r}.")
        if dtype not in _DTYPES:
            raise InputError(f"`dtype` must be one of {_DTYPES}; got {dtype!r}.")
        if int(n) < 1 or int(shard_rows) < 1:
            raise InputError(f"`n` and `shard_rows` must be positive integers; got n={n!r}, shard_rows={shard_rows!r}.")
        needed = set(_tensor_fields(kind))
        names = set(row_shapes)
        if not needed <= names <= needed | {"scale"}:
            raise InputError(
                f"A {kind} store needs the arrays {sorted(needed)} (and optionally 'scale'); got {sorted(names)}."
            )
        manifest = {
            "format": FORMAT,
            "kind": kind,
            "n": int(n),
            "shard_rows": int(shard_rows),
            "dtype": dtype,
            "row_shapes": {name: [int(s) for s in shape] for name, shape in sorted(row_shapes.items())},
            "fingerprint": str(fingerprint),
        }
        folder = Path(path)
        manifest_file = folder / "manifest.json"
        if manifest_file.exists():
            existing = json.loads(manifest_file.read_text())
            if existing != manifest:
                diff = sorted(k for k in manifest if existing.get(k) != manifest[k])
                raise StaleStateError(
                    f"The factor store at {folder} was started with a different {', '.join(diff)}; "
                    "it cannot be resumed for this fit. Delete the folder or write to a new path."
                )
            return cls(folder, manifest)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(manifest_file, lambda f: f.write(json.dumps(manifest, indent=2)), mode="w")
        return cls(folder, manifest)

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> "FactorStore":
        """Open a complete store for reading.

        Every shard file must exist with the shape and dtype of the manifest; with ``verify`` (the
        default) its checksum is also recomputed, which reads the whole store once. A missing,
        torn, resized or corrupted shard raises :class:`~representer.errors.StaleStateError`.
        """
        folder = Path(path)
        manifest_file = folder / "manifest.json"
        if not manifest_file.exists():
            raise RepresenterError(f"No factor store at {folder} (missing manifest.json).")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise RepresenterError(f"{manifest_file} is not a {FORMAT} manifest (format={manifest.get('format')!r}).")
        store = cls(folder, manifest)
        missing = [j for j in range(store.n_shards) if not store._record_file(j).exists()]
        if missing:
            raise RepresenterError(
                f"The factor store at {folder} is incomplete: {len(missing)} of {store.n_shards} shards are not "
                f"written (first: {missing[0]}). Resume the fit that writes it (write_factors with the same spec)."
            )
        for shard in range(store.n_shards):
            problem = store._shard_problem(shard, checksums=verify)
            if problem:
                raise StaleStateError(f"The factor store at {folder} is corrupt: {problem}. Rewrite that shard.")
        return store

    # ------------------------------------------------------------------ writing
    def _shard_problem(self, shard: int, *, checksums: bool) -> str | None:
        """Why ``shard`` is not validly written (``None`` if it is)."""
        record_file = self._record_file(shard)
        if not record_file.exists():
            return f"shard {shard} has no record"
        record = json.loads(record_file.read_text())
        start, stop = self.shard_bounds(shard)
        if (record.get("start"), record.get("stop")) != (start, stop) or set(record.get("files", {})) != set(self.row_shapes):
            return f"the record of shard {shard} does not match the manifest"
        for name, row_shape in self.row_shapes.items():
            file = self._array_file(name, shard)
            if not file.exists():
                return f"{file.name} is missing"
            try:
                array = np.load(file, mmap_mode="r")
            except (ValueError, OSError) as exc:
                return f"{file.name} is not a readable .npy file ({exc})"
            if array.shape != (stop - start, *row_shape) or array.dtype != self.dtype:
                return f"{file.name} has shape {array.shape} and dtype {array.dtype}, expected {(stop - start, *row_shape)} {self.dtype}"
            if checksums and _file_checksum(file) != record["files"][name]:
                return f"{file.name} does not match its checksum"
        return None

    def pending_shards(self) -> list[int]:
        """Shards not yet validly written (checksums verified): the work left to a resumed fit."""
        return [j for j in range(self.n_shards) if self._shard_problem(j, checksums=True) is not None]

    def write_shard(self, shard: int, arrays: Mapping[str, Any]) -> None:
        """Write the arrays of one shard (rows ``shard_bounds(shard)``), then its checksum record."""
        start, stop = self.shard_bounds(shard)
        if set(arrays) != set(self.row_shapes):
            raise InputError(f"Shard {shard} needs exactly the arrays {sorted(self.row_shapes)}; got {sorted(arrays)}.")
        checked = {}
        for name, value in arrays.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            value = np.ascontiguousarray(value, dtype=self.dtype)
            expected = (stop - start, *self.row_shapes[name])
            if value.shape != expected:
                raise InputError(f"Array {name!r} of shard {shard} has shape {value.shape}; expected {expected}.")
            if not np.all(np.isfinite(value)):
                raise InputError(f"Array {name!r} of shard {shard} contains NaN or infinite values.")
            checked[name] = value
        files = {}
        for name, value in checked.items():
            file = self._array_file(name, shard)
            self._maps.pop((name, shard), None)
            _write_atomic(file, lambda f, v=value: np.save(f, v, allow_pickle=False))
            files[name] = _file_checksum(file)
        record = {"start": start, "stop": stop, "files": files}
        _write_atomic(self._record_file(shard), lambda f: f.write(json.dumps(record, indent=2)), mode="w")

    # ------------------------------------------------------------------ reading
    def _map(self, name: str, shard: int) -> np.ndarray:
        key = (name, shard)
        if key not in self._maps:
            self._maps[key] = np.load(self._array_file(name, shard), mmap_mode="r")
        return self._maps[key]

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of array ``name``, read from the shards that hold them (a copy)."""
        if name not in self.row_shapes:
            raise InputError(f"The store has no array {name!r}; it has {sorted(self.row_shapes)}.")
        if not 0 <= start <= stop <= self.n:
            raise InputError(f"Row range {start}:{stop} is outside the store's {self.n} rows.")
        parts = []
        for shard in range(start // self.shard_rows, -(-stop // self.shard_rows)):
            s0, s1 = self.shard_bounds(shard)
            parts.append(self._map(name, shard)[max(start, s0) - s0 : min(stop, s1) - s0])
        if not parts:
            return np.empty((0, *self.row_shapes[name]), dtype=self.dtype)
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])

    def kernel(self) -> "StoreKernel":
        """A kernel over all rows, reading blocks from disk as the engine asks for them."""
        return StoreKernel(self, 0, self.n)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["manifest"])


def _tensor_fields(kind: str) -> list[str]:
    """Names of the required row-indexed tensors of a kernel kind (its dataclass fields but ``scale``)."""
    return [f.name for f in dataclasses.fields(ROW_KERNELS[kind]) if f.name != "scale"]


class StoreKernel(BilinearKernel):
    """A kernel whose train-side tensors are the rows ``start:stop`` of a :class:`FactorStore`.

    ``block(test, a, b)`` reads rows ``a:b`` (relative to ``start``) from disk, builds the in-memory
    kernel of the store's kind on the test factors' device and dtype, and scores them with it, so
    results equal the in-memory kernel's. Pickling sends only the path and manifest (workers
    reopen the memory maps), which is how :mod:`representer.engine.distributed` ships it.
    """

    def __init__(self, store: FactorStore, start: int, stop: int) -> None:
        self.store = store
        self.start = int(start)
        self.stop = int(stop)
        self.scale = None

    @property
    def n(self) -> int:
        return self.stop - self.start

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def to(self, device: torch.device, dtype: torch.dtype) -> "StoreKernel":
        """No-op: blocks are read onto the test factors' device and dtype."""
        return self

    def view(self, start: int, stop: int) -> "StoreKernel":
        """The kernel over rows ``start:stop`` of this one (nothing is read)."""
        return StoreKernel(self.store, self.start + start, self.start + stop)

    def rows(self, start: int, stop: int, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> BilinearKernel:
        """The in-memory kernel of rows ``start:stop`` (relative to this view), read from disk."""
        if not 0 <= start <= stop <= self.n:
            raise InputError(f"Row range {start}:{stop} is outside the kernel's {self.n} training rows.")
        arrays = {
            name: torch.as_tensor(self.store.read(name, self.start + start, self.start + stop)).to(device=device, dtype=dtype)
            for name in self.store.row_shapes
        }
        return ROW_KERNELS[self.store.kind](**arrays)

    def _rows_for(self, test: TestFactors, start: int, stop: int) -> BilinearKernel:
        return self.rows(start, stop, device=test.sign.device, dtype=test.sign.dtype)

    def raw_block(self, test: TestFactors, start: int, stop: int) -> torch.Tensor:
        return self._rows_for(test, start, stop).raw_block(test, 0, stop - start)

    def block(self, test: TestFactors, start: int, stop: int, **options: Any) -> torch.Tensor:
        """Scores of rows ``start:stop`` with ``scale`` applied; ``options`` (e.g. ``out=``) go to the in-memory kernel."""
        return self._rows_for(test, start, stop).block(test, 0, stop - start, **options)


def write_factors(
    path: str | Path,
    compute: Callable[[int, int], Mapping[str, Any]],
    *,
    kind: str,
    n: int,
    row_shapes: Mapping[str, tuple[int, ...]],
    fingerprint: str,
    dtype: str = "float32",
    shard_rows: int = 65536,
) -> FactorStore:
    """Write a store shard by shard with ``compute(start, stop) -> {name: rows}``; resumable.

    Shards already written and valid are skipped (``compute`` is not called for them), so calling
    this again after an interruption finishes the job. Arguments as in
    :meth:`FactorStore.create_or_resume`. Returns the opened store.
    """
    store = FactorStore.create_or_resume(
        path, kind=kind, n=n, row_shapes=row_shapes, fingerprint=fingerprint, dtype=dtype, shard_rows=shard_rows
    )
    for shard in store.pending_shards():
        store.write_shard(shard, compute(*store.shard_bounds(shard)))
    return FactorStore.open(path, verify=False)


def save_kernel(
    kernel: BilinearKernel,
    path: str | Path,
    *,
    dtype: str = "float32",
    shard_rows: int = 65536,
    fingerprint: str | None = None,
) -> FactorStore:
    """Write an in-memory kernel's tensors to a store (resumable); ``fingerprint`` defaults to their content hash."""
    kind = kernel_kind(kernel)
    if isinstance(kernel, StoreKernel):
        raise InputError("The kernel is already store-backed; open its store instead of saving it again.")
    arrays = {name: value.detach().cpu().numpy() for name, value in kernel_arrays(kernel).items()}
    if fingerprint is None:
        fingerprint = array_fingerprint(*(arrays[name] for name in sorted(arrays)))
    return write_factors(
        path,
        lambda start, stop: {name: value[start:stop] for name, value in arrays.items()},
        kind=kind,
        n=kernel.n,
        row_shapes={name: value.shape[1:] for name, value in arrays.items()},
        fingerprint=fingerprint,
        dtype=dtype,
        shard_rows=shard_rows,
    )
