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
(colour, if the first image is colour). Class folders and labels that are not integers (for example
``"cat"``) are mapped to class ids by a :class:`~representer.ClassMapping`: the names given in
``DataSpec.class_names`` (or a ``class_names`` array of the ``.npz``), else the sorted folder names /
training labels, which the caller checks against the model's number of classes. An empty class
folder still names a class. Training rows keep the order of the file (images: class folders sorted,
then file names sorted), so a training index in an explanation points at :attr:`UserData.items`
``[index]``. A file that cannot be parsed raises :class:`~representer.errors.InputError` naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .classes import ClassMapping, read_labels
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
        class_names: the name of each class in the order of the model's outputs; folders and
            string labels are mapped by them (default: sorted folder names / training labels).
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
    class_names: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataSpec":
        data = dict(data)
        for key in ("feature_columns", "class_names"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def resolved(self) -> "DataSpec":
        """The same spec with absolute paths (so a run can be reloaded from any folder)."""
        absolute = {k: str(Path(v).expanduser().resolve()) for k in ("path", "test_path", "labels", "test_labels")
                    if (v := getattr(self, k)) is not None}
        return DataSpec.from_dict({**self.to_dict(), **absolute})


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
    """A loaded dataset: training split, optional test split, class mapping and the kind of data.

    ``classes`` is None for integer labels read without class names (the ids are the model's).
    """

    kind: DataKind
    train: Split
    test: Split | None
    classes: ClassMapping | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class names, or None without a mapping."""
        return None if self.classes is None else self.classes.names

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
    try:
        return _load(spec)
    except OSError as exc:  # a folder or file that cannot be listed or opened (permissions, I/O)
        raise InputError(f"Cannot read {exc.filename or spec.path}: {exc.strerror or exc}.") from exc


def _load(spec: DataSpec) -> UserData:
    path = _existing(spec.path, "--data")
    if path.is_dir():
        return _load_image_folders(path, spec, _given(spec))
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


def _given(spec: DataSpec) -> ClassMapping | None:
    return None if spec.class_names is None else ClassMapping(spec.class_names, "given")


def _read(path: Path, what: str, reader: Any) -> Any:
    """``reader(path)``; any failure to parse the file is an :class:`InputError` naming it."""
    try:
        return reader(path)
    except InputError:
        raise
    except Exception as exc:  # numpy, pandas, pyarrow and zipfile raise many types for a damaged file
        raise InputError(f"Cannot read {path} as {what} ({type(exc).__name__}: {str(exc)[:200]}); check the file, or rewrite it.") from exc


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
    if X.ndim == 0:
        raise InputError(f"{what} is a single number, not an array of inputs with one row per example.")
    _check_rows(X, y, what)
    kind, display = _array_display(X)
    return kind, Split(X, y, [f"row {i}" for i in range(X.shape[0])], display)


# ---------------------------------------------------------------------- .npz / .npy
def _npz_file(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles)."""
    def read(p: Path) -> dict[str, np.ndarray]:
        with np.load(p, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise InputError(f"{p} is a single .npy array, not an .npz archive; rename it to .npy and pass --labels.")
            return {k: data[k] for k in data.files}

    return _read(path, "an .npz archive", read)


def _npz_arrays(arrays: dict[str, np.ndarray], path: Path, keys: tuple[str, str], option: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise InputError(
            f"{path.name} has no array {missing[0]!r} (it has {sorted(arrays)}); name the arrays with "
            f"--x-key/--y-key or save them as {keys[0]}/{keys[1]} ({option})."
        )
    return arrays[keys[0]], arrays[keys[1]]


def _npz_classes(arrays: dict[str, np.ndarray], path: Path, given: ClassMapping | None) -> ClassMapping | None:
    """``given``, else the archive's ``class_names`` array, else None."""
    if given is not None or "class_names" not in arrays:
        return given
    names = arrays["class_names"]
    if names.ndim != 1:
        raise InputError(f"{path.name}['class_names'] must be a 1-d array of names; got shape {names.shape}.")
    return ClassMapping(tuple(str(v) for v in names.tolist()), "given")


def _load_npz(path: Path, spec: DataSpec) -> UserData:
    x_key, y_key = spec.x_key or "X_train", spec.y_key or "y_train"
    arrays = _npz_file(path)
    X, y_raw = _npz_arrays(arrays, path, (x_key, y_key), "--data")
    y, classes = read_labels(y_raw, f"{path.name}[{y_key!r}]", _npz_classes(arrays, path, _given(spec)))
    kind, train = _array_split(X, y, f"{path.name}[{x_key!r}]")
    test = None
    if spec.test_path is not None:
        tpath = _existing(spec.test_path, "--test-data")
        test_arrays = _npz_file(tpath)
        if spec.x_key is None and "X_test" in test_arrays:
            x_key, y_key = "X_test", "y_test"
        Xt, yt_raw = _npz_arrays(test_arrays, tpath, (x_key, y_key), "--test-data")
    elif spec.x_key is None and "X_test" in arrays and "y_test" in arrays:
        Xt, yt_raw = arrays["X_test"], arrays["y_test"]
    else:
        Xt = yt_raw = None
    if Xt is not None:
        yt, classes = read_labels(yt_raw, "the test labels", classes)
        test = _array_split(Xt, yt, "the test inputs")[1]
    return UserData(kind, train, test, classes, {"source": str(path)})


def _npy_file(path: Path) -> np.ndarray:
    return _read(path, "an .npy array (pickled object arrays are refused)", lambda p: np.load(p, allow_pickle=False))


def _load_npy(path: Path, spec: DataSpec) -> UserData:
    def pair(x_path: Path, labels: str | None, option: str) -> tuple[np.ndarray, np.ndarray]:
        if labels is None:
            raise InputError(f"An .npy input file needs its labels as another .npy file: pass `{option}`.")
        X = _npy_file(x_path)
        if not isinstance(X, np.ndarray):
            raise InputError(f"{x_path} is an .npz archive, not an .npy array; rename it to .npz.")
        return X, _npy_file(_existing(labels, option))

    X, y_raw = pair(path, spec.labels, "--labels")
    y, classes = read_labels(y_raw, "--labels", _given(spec))
    kind, train = _array_split(X, y, path.name)
    test = None
    if spec.test_path is not None:
        Xt, yt_raw = pair(_existing(spec.test_path, "--test-data"), spec.test_labels, "--test-labels")
        yt, classes = read_labels(yt_raw, "--test-labels", classes)
        test = _array_split(Xt, yt, "--test-data")[1]
    return UserData(kind, train, test, classes, {"source": str(path)})


# ---------------------------------------------------------------------- tables
def _read_table(path: Path) -> Any:
    try:
        import pandas as pd
    except ModuleNotFoundError as exc:
        raise InputError("Reading CSV / Parquet needs pandas: `pip install 'representer[trees]'`.") from exc
    if path.suffix.lower() == ".csv":
        return _read(path, "a CSV table", pd.read_csv)
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise InputError(f"Reading Parquet needs pyarrow: `pip install pyarrow` ({exc}).") from exc
    return _read(path, "a Parquet table", pd.read_parquet)


def _table_split(path: Path, spec: DataSpec, classes: ClassMapping | None, option: str) -> tuple[DataKind, Split, Any]:
    frame = _read_table(path)
    if spec.label_column is None:
        raise InputError(f"A table needs its label column: pass `--label-column` (columns of {path.name}: {list(frame.columns)}).")
    wanted = [spec.label_column] + ([spec.text_column] if spec.text_column else []) + list(spec.feature_columns or ())
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InputError(f"{path.name} ({option}) has no column {missing[0]!r}; its columns are {list(frame.columns)}.")
    if len(frame) == 0:
        raise InputError(f"{path.name} ({option}) has no rows.")
    y, classes = read_labels(frame[spec.label_column].to_numpy(), f"{path.name}[{spec.label_column!r}]", classes)
    items = [f"row {i}" for i in range(len(frame))]
    if spec.text_column is not None:
        texts = frame[spec.text_column].astype(str).tolist()
        return "text", Split(texts, y, items, texts), classes
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
    return "table", Split(X, y, items, inputs.to_dict("records")), classes


def _load_table(path: Path, spec: DataSpec) -> UserData:
    kind, train, classes = _table_split(path, spec, _given(spec), "--data")
    test = None
    if spec.test_path is not None:
        _, test, classes = _table_split(_existing(spec.test_path, "--test-data"), spec, classes, "--test-data")
    return UserData(kind, train, test, classes, {"source": str(path)})


# ---------------------------------------------------------------------- image folders
def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"{root} has no class folders: lay images out as {root}/<class name>/<image>.png.")
    return folders


def _open_image(path: Path) -> Any:
    """The decoded image at ``path``; a file PIL cannot decode is an :class:`InputError` naming it."""
    from PIL import Image

    def read(p: Path) -> Any:
        with Image.open(p) as image:
            image.load()
            return image.copy()

    try:
        return read(path)
    except Exception as exc:  # UnidentifiedImageError, OSError (truncated), DecompressionBombError …
        raise InputError(
            f"Cannot read the image {path} ({type(exc).__name__}: {exc}); remove it from the class folder or re-save it."
        ) from exc


def _pixels(image: Any, grey: bool) -> np.ndarray:
    pixels = np.asarray(image.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    return pixels[None] if grey else np.moveaxis(pixels, -1, 0)


def _image_split(root: Path, classes: ClassMapping | None, grey: bool | None) -> tuple[Split, ClassMapping, bool]:
    folders = _class_folders(root)
    if classes is None:
        classes = ClassMapping.sorted_labels(p.name for p in folders)
    unknown = sorted(p.name for p in folders if p.name not in classes.names)
    if unknown:
        raise InputError(
            f"{root} has class folders {unknown[:5]} that are not class names ({list(classes.names)[:10]}); rename them, "
            "or pass every class name in the order of the model's outputs with --class-names."
        )
    files: list[tuple[Path, int]] = []
    for folder in folders:
        found_here = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        files += [(f, classes.names.index(folder.name)) for f in found_here]
    if not files:
        raise InputError(
            f"The class folders of {root} hold no images ({', '.join(IMAGE_SUFFIXES)}); put each class's images "
            "directly in its folder (no sub-folders)."
        )
    if grey is None:
        grey = _open_image(files[0][0]).mode in ("1", "L", "LA", "I", "I;16", "F")
    images = [_pixels(_open_image(f), grey) for f, _ in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise InputError(f"The images in {root} have different sizes {sorted(shapes)[:3]}; resize them to one size first.")
    X = np.stack(images)
    y = np.array([label for _, label in files], dtype=np.int64)
    return Split(X, y, [str(f.relative_to(root)) for f, _ in files], X), classes, grey


def _load_image_folders(root: Path, spec: DataSpec, given: ClassMapping | None) -> UserData:
    nested = (root / "train").is_dir() and (root / "test").is_dir() and spec.test_path is None
    train, classes, grey = _image_split(root / "train" if nested else root, given, None)
    test = None
    if nested:
        test = _image_split(root / "test", classes, grey)[0]
    elif spec.test_path is not None:
        test_root = _existing(spec.test_path, "--test-data")
        if not test_root.is_dir():
            raise InputError(f"The training data is a folder of images, so `--test-data` must be one too; got {test_root}.")
        test = _image_split(test_root, classes, grey)[0]
    return UserData("images", train, test, classes, {"source": str(root)})
