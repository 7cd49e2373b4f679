"""Load a user's own classifier for the ``representer`` command.

A model is named by ``source``:

* a Python entry point ``package.module:build_model`` or ``path/to/file.py:build_model`` — a
  callable taking no arguments and returning a ``torch.nn.Module`` — plus, optionally, ``weights``: a
  state dict saved with safetensors (``.safetensors``) or ``torch.save`` (read with
  ``torch.load(..., weights_only=True)``; a checkpoint dict holding the state dict under
  ``"state_dict"`` or ``"model_state_dict"`` also works). The network is put in eval mode and wrapped
  in :class:`~representer.TorchClassifier` (``head``: dotted name of its linear head);
* a gradient-boosted tree model file: XGBoost ``.json`` / ``.ubj`` or LightGBM ``.txt``, wrapped in
  :class:`~representer.TreeEnsemble` (``tree_features``: ``"margins"`` or ``"leaves"``).

For text, ``encoder`` is another entry point, ``module:encode``: a callable mapping a list of strings
to what the network's forward takes (an array of token ids, or a dict of arrays such as
``{"input_ids": ..., "lengths": ...}``).

Modules named ``package.module`` are imported with ``search_path`` (the folder ``fit`` ran in) first
on ``sys.path``, as ``python -m`` would.

Trust: importing a module runs its code. ``fit`` records, in ``ModelSpec.code``, the SHA-256 of every
file that importing the model's and the encoder's entry points executes (the ``.py`` file, or the
module and its packages' ``__init__.py``), found without running anything. :func:`load_model`
refuses (:class:`~representer.errors.UntrustedCodeError`) to import a file that is not among them
or whose hash changed, unless ``trust_code=True`` (``--trust-code``). The check covers those files
only, not the modules they import in turn, and it cannot vouch for a run folder written by someone
else: the recorded hashes are in that folder too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, UntrustedCodeError
from .models import ClassifierAdapter, TorchClassifier, TreeEnsemble

TREE_SUFFIXES = {".json": "xgboost", ".ubj": "xgboost", ".txt": "lightgbm"}
_STATE_DICT_KEYS = ("state_dict", "model_state_dict")


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild the model (JSON-serialisable; saved in a run's ``run.json``)."""

    source: str
    weights: str | None = None
    head: str | None = None
    tree_features: str = "margins"
    encoder: str | None = None
    search_path: str | None = None
    code: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(**data)

    def resolved(self) -> "ModelSpec":
        """Absolute file paths, and the current folder as ``search_path`` for module imports."""
        return ModelSpec(
            source=_resolve_source(self.source),
            weights=str(Path(self.weights).expanduser().resolve()) if self.weights else None,
            head=self.head,
            tree_features=self.tree_features,
            encoder=_resolve_source(self.encoder) if self.encoder else None,
            search_path=self.search_path or str(Path.cwd()),
            code=self.code,
        )

    def check_files(self) -> None:
        """Refuse a missing ``--weights`` file or tree model file now, before any data are read.

        (Missing ``.py`` entry points are refused by :meth:`code_files`.)
        """
        if self.weights is not None and not Path(self.weights).is_file():
            raise InputError(f"`--weights`: the file {self.weights} does not exist.")
        if _is_tree_file(self.source) and not Path(self.source).is_file():
            raise InputError(f"`--model`: the file {self.source} does not exist.")

    def code_files(self) -> list[Path]:
        """The files importing the model's and the encoder's entry points executes (found without running them)."""
        files = _entry_point_files(self.source, self.search_path, "--model") if not _is_tree_file(self.source) else []
        if self.encoder:
            files += _entry_point_files(self.encoder, self.search_path, "--encoder")
        return list(dict.fromkeys(files))

    def with_code(self) -> "ModelSpec":
        """The same spec with ``code``: the SHA-256 of each of :meth:`code_files`."""
        return ModelSpec(**{**self.to_dict(), "code": {str(f): _sha256(f) for f in self.code_files()}})

    def check_code(self) -> None:
        """Refuse code that lies outside the files recorded at ``fit``, or whose hash changed since."""
        if self.code is None:
            raise UntrustedCodeError(
                "The run records no hashes of the model's code, so it cannot be checked; pass --trust-code if you "
                "trust the code it names, or fit the run again."
            )
        for file in self.code_files():
            if str(file) not in self.code:
                raise UntrustedCodeError(
                    f"Loading the model would run {file}, which is not code that `representer fit` ran "
                    f"({', '.join(self.code) or 'none'}). Only open run folders you trust; if you trust this code, pass --trust-code."
                )
            if _sha256(file) != self.code[str(file)]:
                raise UntrustedCodeError(
                    f"{file} changed since `representer fit` (its SHA-256 differs), so the model it builds may differ "
                    "from the one explained. Fit the run again, or pass --trust-code if you trust the change."
                )


@dataclass
class UserModel:
    """The adapter to explain, and the text encoder if any (``inputs`` applies it)."""

    adapter: ClassifierAdapter
    encoder: Callable[[list[str]], Any] | None = None

    def inputs(self, X: Any) -> Any:
        """What the adapter's ``features`` takes: ``X`` itself, or ``encoder(X)`` for a list of texts."""
        if isinstance(X, list):
            if self.encoder is None:
                raise InputError(
                    "The data are texts, but the model has no encoder: pass `--encoder module:encode`, a function "
                    "mapping a list of strings to the network's input (token ids, or a dict of arrays)."
                )
            with _user_code("`--encoder`"):
                return self.encoder(X)
        return X


def load_model(spec: ModelSpec, *, trust_code: bool = False) -> UserModel:
    """Build the model named by ``spec`` (see the module docstring); the code is checked unless ``trust_code``."""
    if not trust_code:
        spec.check_code()
    if _is_tree_file(spec.source):
        if spec.weights is not None:
            raise InputError("`--weights` is for PyTorch entry points; a tree model file holds its own weights.")
        return UserModel(TreeEnsemble(_load_booster(spec.source), features=spec.tree_features))  # type: ignore[arg-type]
    net = build_network(spec.source, spec.search_path)
    if spec.weights is not None:
        apply_state_dict(net, read_state_dict(spec.weights))
    net.eval()
    encoder = load_entry_point(spec.encoder, spec.search_path, "--encoder") if spec.encoder else None
    return UserModel(TorchClassifier(net, head=spec.head), encoder)


# ---------------------------------------------------------------------- entry points
def _is_tree_file(source: str) -> bool:
    return Path(source).suffix.lower() in TREE_SUFFIXES and ":" not in Path(source).name


def _sha256(file: Path) -> str:
    with open(file, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _entry_point_files(ref: str, search_path: str | None, option: str) -> list[Path]:
    """The source files importing the module of ``ref`` executes: the file, or the module and its packages."""
    module_name, _ = _split_entry_point(ref, option)
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise InputError(f"`{option}`: the file {path} does not exist.")
        return [path.resolve()]
    files: list[Path] = []
    path: list[str] | None = [search_path, *sys.path] if search_path else list(sys.path)
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        loaded = sys.modules.get(name)
        if loaded is not None:
            origin, locations = getattr(loaded, "__file__", None), getattr(loaded, "__path__", None)
        else:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                raise InputError(
                    f"`{option}`: cannot import {name!r} (no such module on the search path); run from the folder that "
                    "holds it, install it, or name the file instead (path/to/file.py:function)."
                )
            origin = spec.origin if spec.has_location else None
            locations = spec.submodule_search_locations
        if origin:
            files.append(Path(origin).resolve())
        path = list(locations) if locations is not None else None
        if path is None and depth < len(parts):
            raise InputError(f"`{option}`: {name!r} is a module, not a package, so it has no {parts[depth]!r}.")
    return files


def _split_entry_point(ref: str, option: str) -> tuple[str, str]:
    module, sep, name = ref.rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise InputError(
            f"`{option}` must be an entry point `package.module:function` or `path/to/file.py:function`, or a tree "
            f"model file ({', '.join(TREE_SUFFIXES)}); got {ref!r}."
        )
    return module, name


def _resolve_source(ref: str) -> str:
    """Make a ``file.py:fn`` entry point or a model file absolute; leave ``package.module:fn`` alone."""
    module, sep, name = ref.rpartition(":")
    if sep and module.endswith(".py"):
        return f"{Path(module).expanduser().resolve()}:{name}"
    if not sep and Path(ref).suffix.lower() in TREE_SUFFIXES:
        return str(Path(ref).expanduser().resolve())
    return ref


def load_entry_point(ref: str, search_path: str | None = None, option: str = "--model") -> Callable[..., Any]:
    """The callable named by ``package.module:name`` or ``file.py:name``."""
    module_name, name = _split_entry_point(ref, option)
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise InputError(f"`{option}`: the file {path} does not exist.")
        spec = importlib.util.spec_from_file_location(f"_representer_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        with _user_code(f"`{option}`: running {path}"):
            spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        if search_path and search_path not in sys.path:
            sys.path.insert(0, search_path)
        try:
            with _user_code(f"`{option}`: importing {module_name}"):
                module = importlib.import_module(module_name)
        except InputError as exc:
            if not isinstance(exc.__cause__, ModuleNotFoundError):
                raise
            raise InputError(
                f"`{option}`: cannot import {module_name!r} ({exc.__cause__}); run from the folder that holds it, install "
                "it, or name the file instead (path/to/file.py:function)."
            ) from exc.__cause__
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise InputError(f"`{option}`: {module_name} has no {name!r} (its callables: {public[:10]}).")
    target = getattr(module, name)
    if not callable(target):
        raise InputError(f"`{option}`: {module_name}:{name} is a {type(target).__name__}, not a callable.")
    return target


def build_network(ref: str, search_path: str | None = None) -> Any:
    """Call the zero-argument entry point ``ref`` and check that it returns an ``nn.Module``."""
    from torch import nn

    build = load_entry_point(ref, search_path)
    try:
        required = [p.name for p in inspect.signature(build).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):  # builtins without a signature
        required = []
    if required:
        raise InputError(f"`--model`: {ref} must take no arguments, but it requires {required}; wrap it in a function that does.")
    with _user_code(f"`--model`: {ref}()"):
        net = build()
    if not isinstance(net, nn.Module):
        raise InputError(f"`--model`: {ref} returned a {type(net).__name__}, not a torch.nn.Module.")
    return net


@contextmanager
def _user_code(what: str) -> Iterator[None]:
    """Report an exception raised by the user's own code as one :class:`InputError` naming where it came from."""
    try:
        yield
    except Exception as exc:  # anything the user's module or function raises
        raise InputError(f"{what} raised {type(exc).__name__}: {exc}").with_traceback(None) from exc


# ---------------------------------------------------------------------- weights
def read_state_dict(path: str) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (read with ``weights_only=True``)."""
    import torch

    file = Path(path)
    if not file.is_file():
        raise InputError(f"`--weights`: the file {file} does not exist.")
    if file.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as exc:  # SafetensorError and others for a damaged or non-safetensors file
            raise InputError(
                f"`--weights`: cannot read {file.name} as safetensors ({type(exc).__name__}: {exc}). Save the state dict "
                "with safetensors.torch.save_file(net.state_dict(), path)."
            ) from exc
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file it cannot unpickle safely
        raise InputError(
            f"`--weights`: cannot read {file.name} with torch.load(weights_only=True) ({type(exc).__name__}: {exc}). "
            "Save a state dict: torch.save(net.state_dict(), path), or use safetensors."
        ) from exc
    if isinstance(state, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"`--weights`: {file.name} does not hold a state dict (a mapping of parameter names to tensors).")
    return dict(state)


def apply_state_dict(net: Any, state: Mapping[str, Any]) -> None:
    """Load ``state`` into ``net`` strictly; a mismatch names the missing, unexpected and mis-shaped keys."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {items[:5]}{' …' if len(items) > 5 else ''}" for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if items]
        raise InputError(
            "`--weights` does not match the network built by `--model`: " + "; ".join(parts)
            + ". Check that build_model() builds the architecture the weights were saved from."
        )
    net.load_state_dict(dict(state))


def _load_booster(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"`--model`: the file {file} does not exist.")
    library = TREE_SUFFIXES[file.suffix.lower()]
    try:
        module = importlib.import_module(library)
    except ModuleNotFoundError as exc:
        raise InputError(f"`--model` {file.name} is a {library} model, but {library} is not installed: `pip install 'representer[trees]'`.") from exc
    try:
        return module.Booster(model_file=str(file))
    except Exception as exc:  # xgboost.core.XGBoostError / lightgbm.basic.LightGBMError
        raise InputError(f"`--model`: {library} cannot read {file.name} ({type(exc).__name__}: {str(exc).splitlines()[0]}).") from exc

