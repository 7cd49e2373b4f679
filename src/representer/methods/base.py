"""The explainer base class: scikit-learn conventions on top of the scoring engine.

A method subclasses :class:`Explainer` and implements three hooks:

* ``_fit(phi, y)`` — learn the train-side state from training features ``phi`` (``(n, D)``,
  float64, no ones column) and labels ``y``, storing arrays in attributes listed in
  ``_fitted_arrays`` (names ending in ``_``);
* ``_build_kernel()`` — return the train-side :class:`~representer.engine.BilinearKernel` from
  those arrays (called after ``fit`` and after ``load``);
* ``_test_factors(phi, target)`` — the test-side :class:`~representer.engine.TestFactors`;

and ``_self_influence()``. Everything else — input handling, class selection, streaming top-k,
dense attribution, persistence — lives here once. Sign and orientation: see
:mod:`representer.explanation`.
"""

from __future__ import annotations

import inspect
import json
import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .. import __version__
from .._validation import as_labels, check_device
from ..engine import BilinearKernel, EngineOptions, TestFactors, dense, stream_blocks
from ..engine import top_k as engine_top_k
from ..errors import InputError, NotFittedError, RepresenterError, StaleStateError
from ..explanation import Explanation, TopK
from ..models import ClassifierAdapter, as_adapter, predicted_class
from ..models.base import array_fingerprint

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Explainer(ABC):
    """Base class of all explainers.

    Args (common to every explainer, keyword-only):
        block_size: training rows per scoring block (memory is ``test_batch_size × block_size``).
        test_batch_size: test rows scored at once.
        device: ``"cpu"``, ``"cuda"`` … where scoring runs (head math runs there too, in float64).
        dtype: ``"float32"`` (default) or ``"float64"`` for bulk scoring.
    """

    name: ClassVar[str] = "explainer"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: Any,
        *,
        block_size: int = 16384,
        test_batch_size: int = 1024,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.model = model
        self.block_size = block_size
        self.test_batch_size = test_batch_size
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            if "__init__" in vars(klass) and klass is not object:
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.name not in ("self", "model") and p.kind is not p.VAR_KEYWORD and p.name not in names:
                        names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__`` (without the model)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @property
    def options(self) -> EngineOptions:
        if self.dtype not in _DTYPES:
            raise InputError(f"`dtype` must be 'float32' or 'float64'; got {self.dtype!r}.")
        return EngineOptions(
            block_size=int(self.block_size),
            test_batch_size=int(self.test_batch_size),
            device=str(self.device),
            dtype=_DTYPES[self.dtype],
        )

    @property
    def head_device(self) -> torch.device:
        """Device for float64 head math."""
        return check_device(self.device)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> "Explainer":
        """Compute training features once and fit the method's train-side state. Returns ``self``."""
        self.model_: ClassifierAdapter = as_adapter(self.model)
        phi = self.model_.features(X)
        self.y_ = as_labels(y, "y", n=phi.shape[0], n_classes=self.model_.n_classes)
        self.train_features_ = phi
        self._fit(phi, self.y_)
        self._finish_fit()
        return self

    def _finish_fit(self) -> None:
        self.kernel_ = self._build_kernel().to(check_device(self.device), self.options.dtype)

    @property
    def n_train_(self) -> int:
        self._check_fitted()
        return int(self.train_features_.shape[0])

    def _check_fitted(self) -> None:
        if not hasattr(self, "kernel_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call `fit(X_train, y_train)` first.")

    def _train_tilde(self) -> torch.Tensor:
        """Training features with the ones column, float64, on the head device."""
        from ..head import append_ones

        return append_ones(torch.as_tensor(self.train_features_, dtype=torch.float64, device=self.head_device))

    def _theta(self) -> torch.Tensor:
        """The model's head with the bias folded in, ``(K, D+1)`` float64."""
        return torch.as_tensor(self.model_.theta, dtype=torch.float64, device=self.head_device)

    @abstractmethod
    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None: ...

    @abstractmethod
    def _build_kernel(self) -> BilinearKernel: ...

    @abstractmethod
    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors: ...

    @abstractmethod
    def _self_influence(self) -> np.ndarray: ...

    # ------------------------------------------------------------------ explaining
    def resolve_target(self, target: Any, phi: np.ndarray, y: Any = None) -> np.ndarray:
        """Class explained per test point: ``"predicted"``, ``"label"`` (needs ``y``), an int or an array."""
        m = phi.shape[0]
        n_classes = self.model_.n_classes
        if isinstance(target, str):
            if target == "predicted":
                return predicted_class(self.model_.logits_from_features(phi))
            if target == "label":
                if y is None:
                    raise InputError("`target='label'` needs the test labels: pass `y=` to explain/attribute.")
                return as_labels(y, "y", n=m, n_classes=n_classes)
            raise InputError(f"`target` must be 'predicted', 'label', an int or an array; got {target!r}.")
        if np.isscalar(target):
            return as_labels(np.full(m, target), "target", n=m, n_classes=n_classes)
        return as_labels(target, "target", n=m, n_classes=n_classes)

    def _prepare(self, X: Any, target: Any, y: Any) -> tuple[np.ndarray, TestFactors]:
        self._check_fitted()
        phi = self.model_.features(X)
        tgt = self.resolve_target(target, phi, y)
        return tgt, self._test_factors(phi, tgt)

    def explain(self, X: Any, top_k: int = 10, target: Any = "predicted", y: Any = None) -> Explanation:
        """Top-``k`` excitatory and inhibitory training points for each row of ``X``."""
        if int(top_k) < 1:
            raise InputError(f"`top_k` must be a positive integer; got {top_k!r}.")
        tgt, test = self._prepare(X, target, y)
        exc_i, exc_s, inh_i, inh_s = engine_top_k(self.kernel_, test, int(top_k), self.options)
        return Explanation(
            excitatory=TopK(exc_i, exc_s),
            inhibitory=TopK(inh_i, inh_s),
            target=tgt,
            method=self.name,
            meta={"top_k": int(top_k), "params": _jsonable(self.get_params())},
        )

    def attribute(self, X: Any, target: Any = "predicted", y: Any = None) -> np.ndarray:
        """Dense ``(m, n)`` test × train attribution matrix, computed in blocks (opt-in: it is m × n)."""
        _, test = self._prepare(X, target, y)
        return dense(self.kernel_, test, self.options)

    def attribution_blocks(self, X: Any, target: Any = "predicted", y: Any = None):
        """Yield ``(test_start, train_start, scores)`` blocks of :meth:`attribute` without storing it."""
        _, test = self._prepare(X, target, y)
        yield from stream_blocks(self.kernel_, test, self.options)

    def self_influence(self) -> np.ndarray:
        """Per-training-point score for data debugging, ``(n,)``: larger = more suspicious."""
        self._check_fitted()
        return np.asarray(self._self_influence(), dtype=np.float64)

    def ranking_tiebreak(self) -> np.ndarray | None:
        """A secondary score ``(n,)`` ordering points whose :meth:`self_influence` ties (larger first), or ``None``.

        Methods whose self-influence takes few distinct values (DualView's points at the bound) give
        one, so that a label ranking never falls back to index order.
        """
        return None

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted explainer to a folder: ``state.safetensors`` + ``config.json`` (no pickle)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"train_features_": self.train_features_, "y_": self.y_}
        arrays.update({name: getattr(self, name) for name in self._fitted_arrays})
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / "state.safetensors"))
        config = {
            "class": type(self).__name__,
            "params": _jsonable(self.get_params()),
            "fit_report_": _jsonable(getattr(self, "fit_report_", {})),
            "model_fingerprint": self.model_.fingerprint(),
            "data_fingerprint": array_fingerprint(self.train_features_, self.y_),
            "versions": _versions(),
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        return folder

    @classmethod
    def _restore(cls, model: Any, config: dict, arrays: dict[str, np.ndarray]) -> "Explainer":
        explainer = cls(model, **config["params"])
        explainer.model_ = as_adapter(model)
        if explainer.model_.fingerprint() != config["model_fingerprint"]:
            raise StaleStateError(
                "The saved explainer was fitted on a different model (head weights differ); refit it on this "
                "model, or load it with the model it was fitted on."
            )
        for name, value in arrays.items():
            setattr(explainer, name, value)
        if array_fingerprint(explainer.train_features_, explainer.y_) != config["data_fingerprint"]:
            raise StaleStateError("The saved training features do not match their fingerprint; the file is corrupt.")
        explainer.fit_report_ = config.get("fit_report_", {})
        explainer._finish_fit()
        return explainer


def load(path: str | Path, model: Any) -> Explainer:
    """Load an explainer saved with :meth:`Explainer.save`, attached to ``model``.

    ``model`` must be the model the explainer was fitted on: its head is fingerprinted and a
    different one is refused with :class:`~representer.errors.StaleStateError`.
    """
    from safetensors.numpy import load_file

    folder = Path(path)
    if not (folder / "config.json").exists():
        raise RepresenterError(f"No saved explainer at {folder} (missing config.json).")
    config = json.loads((folder / "config.json").read_text())
    arrays = load_file(str(folder / "state.safetensors"))
    return _explainer_class(config["class"])._restore(model, config, arrays)


def _explainer_class(name: str) -> type[Explainer]:
    import representer.methods  # noqa: F401  (registers every explainer subclass)

    pending = list(Explainer.__subclasses__())
    while pending:
        klass = pending.pop()
        if klass.__name__ == name:
            return klass
        pending.extend(klass.__subclasses__())
    raise RepresenterError(f"The saved explainer class {name!r} is not known to this version of representer.")


def _versions() -> dict[str, str]:
    return {"representer": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
