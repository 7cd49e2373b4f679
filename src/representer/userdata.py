"""Load a user's own training and test data from files, for the ``representer`` command.

Supported sources (the kind is chosen from the path):

==============================  ==================================================================
source                          what is read
==============================  ==================================================================
``data.npz``                    arrays ``X_train, y_train`` (and ``X_test, y_test`` if present), or
                                the arrays named by ``x_key`` / ``y_key`` (test: same keys in
                                ``test_path``); an optional ``class_names`` array names the classes
``X.npy`` + ``labels=y.npy``    one array of inputs and one of labels (test: ``test_path`` +
                                ``test_labels``)
``table.csv`` / ``.parquet``    tabular rows: ``label_column`` is the label, ``feature_columns``
                                (default: every other column, all numeric) are the inputs; with
                                ``text_column`` the inputs are that column's texts instead
``folder/``                     images in ``folder/<class name>/*.png`` (ImageFolder layout), or in
                                ``folder/train/<class name>/`` and ``folder/test/<class name>/``
==============================  ==================================================================

Images become float32 arrays in ``[0, 1]`` of shape ``(N, 1, H, W)`` (grey) or ``(N, 3, H, W)``
(colour, if the first image is colour); classes are the sorted folder names. Labels that are not
integers (for example ``"cat"``) become class ids in the sorted order of the training labels.
Training rows keep the order of the file (images: class folders sorted, then file names sorted), so
a training index in an explanation points at :attr:`UserData.items` ``[index]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import InputError

DataKind = Literal["images", "table", "text", "array"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class DataSpec:
    """Where the data is and how to read it (JSON-serialisable; saved in a run's ``run.json``).

    Args:
        path: the training data (or both splits: an ``.npz`` with ``X_test``, a folder with ``train/``
            and ``test/``).
        test_path: the test data, in the same format as ``path`` (optional).
        labels / test_labels: ``.npy`` label files when ``path`` / ``test_path`` are ``.npy`` inputs.
        x_key / y_key: array names inside ``.npz`` files (default ``X_train``/``y_train`` and
            ``X_test``/``y_test``).
        label_column: the label column of a CSV / Parquet table.
        feature_columns: the input columns of a table (default: all but the label column).
        text_column: the text column of a CSV / Parquet table of texts.
    """

    path: str
    test_path: str | None = None
    labels: str | None = None
    test_labels: str | None = None
    x_key: str | None = None
    y_key: str | None = None
    label_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    text_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataSpec":
        data = dict(data)
        if data.get("feature_columns") is not None:
            data["feature_columns"] = tuple(data["feature_columns"])
        return cls(**data)

    def resolved(self) -> "DataSpec":
        """The same spec with absolute paths (so a run can be reloaded from any folder)."""
        absolute = {k: str(Path(v).expanduser().resolve()) for k in ("path", "test_path", "labels", "test_labels")
                    if (v := getattr(self, k)) is not None}
        return DataSpec(**{**self.to_dict(), **absolute, "feature_columns": self.feature_columns})


@dataclass
class Split:
    """One split: model inputs ``X`` (array, or a list of texts), int64 labels ``y``, and ``items``.

    ``items[i]`` names row ``i`` in the user's files (image path relative to the data folder, or
    ``"row 12"``); ``display`` is what the report draws (images, a list of row dicts, or texts).
    """

    X: Any
    y: np.ndarray
    items: list[str]
    display: Any


@dataclass
class UserData:
    """A loaded dataset: training split, optional test split, class names and the kind of data."""

    kind: DataKind
    train: Split
    test: Split | None
    class_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        """``"train"`` or ``"test"``; a clear error if the test split is missing."""
        if name == "train":
            return self.train
        if name != "test":
            raise InputError(f"The split must be 'train' or 'test'; got {name!r}.")
        if self.test is None:
            raise InputError(
                "This run has no test data: pass `--test-data` to `representer fit` (or an .npz with X_test/y_test, "
                "or a folder with train/ and test/), or use `--split train`."
            )
        return self.test


def load_data(spec: DataSpec) -> UserData:
    """Read the training (and test) data described by ``spec``."""
    path = _existing(spec.path, "--data")
    if path.is_dir():
        return _load_image_folders(path, spec)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, spec)
    if suffix == ".npy":
        return _load_npy(path, spec)
    if suffix in _TABLE_SUFFIXES:
        return _load_table(path, spec)
    raise InputError(
        f"Unknown data file extension {path.suffix!r} ({path}): use an .npz, an .npy (with --labels), a .csv or "
        ".parquet table (with --label-column), or a folder of images (one sub-folder per class)."
    )


# ---------------------------------------------------------------------- helpers
def _existing(value: str, option: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise InputError(f"`{option}` points to {path}, which does not exist.")
    return path


def _int_labels(values: Any, what: str, names: tuple[str, ...] | None) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Labels as int64 class ids; non-integer labels are mapped through ``names`` (sorted labels of train)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"{what} must be one label per row (1-D); got shape {arr.shape}.")
    if arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        return arr.astype(np.int64), names
    labels = arr.astype(str)
    if names is None:
        names = tuple(sorted(set(labels.tolist())))
    lookup = {name: k for k, name in enumerate(names)}
    unknown = sorted(set(labels.tolist()) - set(lookup))
    if unknown:
        raise InputError(f"{what} has labels not seen in the training data: {unknown[:5]}.")
    return np.array([lookup[v] for v in labels], dtype=np.int64), names


def _check_rows(X: Any, y: np.ndarray, what: str) -> None:
    n = len(X) if not isinstance(X, np.ndarray) else X.shape[0]
    if n != y.shape[0]:
        raise InputError(f"{what}: {n} inputs but {y.shape[0]} labels; pass one label per input.")
    if n == 0:
        raise InputError(f"{what} is empty.")


def _array_display(X: np.ndarray) -> tuple[DataKind, Any]:
    """Arrays that look like images ``(N, H, W)`` / ``(N, 1|3, H, W)`` are drawn as images, others as rows."""
    if X.ndim == 3 or (X.ndim == 4 and X.shape[1] in (1, 3)):
        return "images", X
    flat = X.reshape(X.shape[0], -1)
    return "array", [{f"x{j}": v for j, v in enumerate(row[:8])} for row in flat.tolist()]


def _array_split(X: np.ndarray, y: np.ndarray, what: str) -> tuple[DataKind, Split]:
    if X.dtype.kind not in "fiub":
        raise InputError(f"{what} must be numeric; got dtype {X.dtype}.")
    _check_rows(X, y, what)
    kind, display = _array_display(X)
    return kind, Split(X, y, [f"row {i}" for i in range(X.shape[0])], display)


# ---------------------------------------------------------------------- .npz / .npy
def _npz_arrays(path: Path, keys: tuple[str, str], option: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise InputError(
                f"{path.name} has no array {missing[0]!r} (it has {sorted(data.files)}); name the arrays with "
                f"--x-key/--y-key or save them as {keys[0]}/{keys[1]} ({option})."
            )
        names = data["class_names"] if "class_names" in data.files else None
        return data[keys[0]], data[keys[1]], names


def _load_npz(path: Path, spec: DataSpec) -> UserData:
    x_key, y_key = spec.x_key or "X_train", spec.y_key or "y_train"
    X, y_raw, names = _npz_arrays(path, (x_key, y_key), "--data")
    class_names = tuple(str(v) for v in names) if names is not None else None
    y, class_names = _int_labels(y_raw, f"{path.name}[{y_key!r}]", class_names)
    kind, train = _array_split(X, y, f"{path.name}[{x_key!r}]")
    test = None
    if spec.test_path is not None:
        tpath = _existing(spec.test_path, "--test-data")
        if spec.x_key is None:
            with np.load(tpath, allow_pickle=False) as data:
                x_key, y_key = ("X_test", "y_test") if "X_test" in data.files else (x_key, y_key)
        Xt, yt_raw, _ = _npz_arrays(tpath, (x_key, y_key), "--test-data")
    elif spec.x_key is None:
        with np.load(path, allow_pickle=False) as data:
            has_test = "X_test" in data.files and "y_test" in data.files
        Xt, yt_raw, _ = _npz_arrays(path, ("X_test", "y_test"), "--data") if has_test else (None, None, None)
    else:
        Xt = yt_raw = None
    if Xt is not None:
        yt, class_names = _int_labels(yt_raw, "the test labels", class_names)
        test = _array_split(Xt, yt, "the test inputs")[1]
    return UserData(kind, train, test, class_names, {"source": str(path)})


def _load_npy(path: Path, spec: DataSpec) -> UserData:
    def pair(x_path: Path, labels: str | None, option: str) -> tuple[np.ndarray, np.ndarray]:
        if labels is None:
            raise InputError(f"An .npy input file needs its labels as another .npy file: pass `{option}`.")
        return np.load(x_path, allow_pickle=False), np.load(_existing(labels, option), allow_pickle=False)

    X, y_raw = pair(path, spec.labels, "--labels")
    y, names = _int_labels(y_raw, "--labels", None)
    kind, train = _array_split(X, y, path.name)
    test = None
    if spec.test_path is not None:
        Xt, yt_raw = pair(_existing(spec.test_path, "--test-data"), spec.test_labels, "--test-labels")
        yt, names = _int_labels(yt_raw, "--test-labels", names)
        test = _array_split(Xt, yt, "--test-data")[1]
    return UserData(kind, train, test, names, {"source": str(path)})


# ---------------------------------------------------------------------- tables
def _read_table(path: Path) -> Any:
    try:
        import pandas as pd
    except ModuleNotFoundError as exc:
        raise InputError("Reading CSV / Parquet needs pandas: `pip install 'representer[trees]'`.") from exc
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise InputError(f"Reading Parquet needs pyarrow: `pip install pyarrow` ({exc}).") from exc


def _table_split(path: Path, spec: DataSpec, names: tuple[str, ...] | None, option: str) -> tuple[DataKind, Split, Any]:
    frame = _read_table(path)
    if spec.label_column is None:
        raise InputError(f"A table needs its label column: pass `--label-column` (columns of {path.name}: {list(frame.columns)}).")
    wanted = [spec.label_column] + ([spec.text_column] if spec.text_column else []) + list(spec.feature_columns or ())
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InputError(f"{path.name} ({option}) has no column {missing[0]!r}; its columns are {list(frame.columns)}.")
    y, names = _int_labels(frame[spec.label_column].to_numpy(), f"{path.name}[{spec.label_column!r}]", names)
    items = [f"row {i}" for i in range(len(frame))]
    if spec.text_column is not None:
        texts = frame[spec.text_column].astype(str).tolist()
        return "text", Split(texts, y, items, texts), names
    columns = list(spec.feature_columns) if spec.feature_columns else [c for c in frame.columns if c != spec.label_column]
    inputs = frame[columns]
    bad = [c for c in columns if inputs[c].dtype.kind not in "fiub"]
    if bad:
        raise InputError(
            f"Columns {bad[:5]} of {path.name} are not numeric; encode them, or pick numeric inputs with --feature-columns "
            "(for a column of texts use --text-column)."
        )
    X = inputs.to_numpy(dtype=np.float32)
    _check_rows(X, y, path.name)
    return "table", Split(X, y, items, inputs.to_dict("records")), names


def _load_table(path: Path, spec: DataSpec) -> UserData:
    kind, train, names = _table_split(path, spec, None, "--data")
    test = None
    if spec.test_path is not None:
        _, test, names = _table_split(_existing(spec.test_path, "--test-data"), spec, names, "--test-data")
    return UserData(kind, train, test, names, {"source": str(path)})


# ---------------------------------------------------------------------- image folders
def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"{root} has no class folders: lay images out as {root}/<class name>/<image>.png.")
    return folders


def _read_image(path: Path, grey: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"Cannot read the image {path}: {exc}.") from exc
    return pixels[None] if grey else np.moveaxis(pixels, -1, 0)


def _is_grey(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return image.mode in ("1", "L", "LA", "I", "I;16", "F")


def _image_split(root: Path, names: tuple[str, ...] | None, grey: bool | None) -> tuple[Split, tuple[str, ...], bool]:
    folders = _class_folders(root)
    found = tuple(p.name for p in folders)
    names = found if names is None else names
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise InputError(f"{root} has class folders {unknown} that the training data does not have ({list(names)}).")
    files: list[tuple[Path, int]] = []
    for folder in folders:
        found_here = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        if not found_here:
            raise InputError(
                f"The class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); put each class's images "
                "directly in its folder (no sub-folders), or remove the folder."
            )
        files += [(f, names.index(folder.name)) for f in found_here]
    grey = _is_grey(files[0][0]) if grey is None else grey
    images = [_read_image(f, grey) for f, _ in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise InputError(f"The images in {root} have different sizes {sorted(shapes)[:3]}; resize them to one size first.")
    X = np.stack(images)
    y = np.array([label for _, label in files], dtype=np.int64)
    return Split(X, y, [str(f.relative_to(root)) for f, _ in files], X), names, grey


def _load_image_folders(root: Path, spec: DataSpec) -> UserData:
    nested = (root / "train").is_dir() and (root / "test").is_dir() and spec.test_path is None
    train, names, grey = _image_split(root / "train" if nested else root, None, None)
    test = None
    if nested:
        test = _image_split(root / "test", names, grey)[0]
    elif spec.test_path is not None:
        test_root = _existing(spec.test_path, "--test-data")
        if not test_root.is_dir():
            raise InputError(f"The training data is a folder of images, so `--test-data` must be one too; got {test_root}.")
        test = _image_split(test_root, names, grey)[0]
    return UserData("images", train, test, names, {"source": str(root)})
