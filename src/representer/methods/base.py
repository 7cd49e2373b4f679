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

import copy
import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .._params import Boolean, Constraint, Device, NoneValue, Options, Strings, check_value, constraints_of, positive, validate_params
from .._saved_format import read_config
from .._validation import check_device
from ..classes import ClassMapping
from ..engine import BilinearKernel, EngineOptions, TestFactors, dense, stream_blocks
from ..engine import top_k as engine_top_k
from ..errors import FileFormatError, InputError, NotFittedError, RepresenterWarning
from ..explanation import Explanation, TopK
from ..models import ClassifierAdapter, as_adapter, predicted_class
from .. import __version__
from . import persistence

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Parameters that only batch the scoring or show progress: changing them keeps a fit.
_SCORING_PARAMS = ("block_size", "test_batch_size", "progress")


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


class Explainer(ABC):
    """Base class of all explainers.

    Every hyper-parameter is checked against the class's ``_parameter_constraints`` table
    (:mod:`representer._params`) when ``fit`` starts, before any work: a bad value raises
    :class:`~representer.errors.InputError` and a failed ``fit`` leaves the explainer as it was.
    Orientation is test × train and positive = excitatory (helpful) everywhere
    (:mod:`representer.explanation`). ``n`` is the number of training points, ``m`` of explained
    points, ``K`` of classes.

    Parameters
    ----------
    model : ClassifierAdapter or nn.Module
        The classifier: a :class:`~representer.TorchClassifier`, :class:`~representer.TreeEnsemble`
        or :class:`~representer.Features` (an ``nn.Module`` is wrapped in a ``TorchClassifier``).
    block_size : int, default 16384
        Training rows per scoring block (memory is ``test_batch_size × block_size``).
    test_batch_size : int, default 1024
        Test rows scored at once.
    device : str, default "cpu"
        Where scoring runs (``"cpu"``, ``"cuda"`` …); head math runs there too, in float64.
    dtype : {"float32", "float64"}, default "float32"
        Precision of bulk scoring.
    class_names : list of str, optional
        The name of each class in the order of the model's outputs. With it, ``y`` may hold names
        (``"cat"``) as well as ids; without it, string labels are numbered in sorted order, and only if
        they name as many classes as the model has (:class:`~representer.ClassMapping`). Recorded as
        ``classes_``, saved and checked.
    progress : bool, optional
        Progress bars on the long steps of ``fit`` (refits, solvers, gradient passes) and on scoring
        in ``explain`` / ``attribute``: ``True`` shows them, ``False`` hides them, ``None`` (default)
        shows them when standard error is a terminal (:mod:`representer._progress`). The command line
        shows the same steps beside its spinner unless this is ``False``.
    """

    name: ClassVar[str] = "explainer"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ()
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "block_size": [positive(int)],
        "test_batch_size": [positive(int)],
        "device": [Device()],
        "dtype": [Options(("float32", "float64"))],
        "class_names": [NoneValue(), Strings(unique=True)],
        "progress": [NoneValue(), Boolean()],
    }

    def __init__(
        self,
        model: Any,
        *,
        block_size: int = 16384,
        test_batch_size: int = 1024,
        device: str = "cpu",
        dtype: str = "float32",
        class_names: Sequence[str] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.block_size = block_size
        self.test_batch_size = test_batch_size
        self.device = device
        self.dtype = dtype
        self.class_names = class_names
        self.progress = progress

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

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The hyper-parameters, as passed to ``__init__``.

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn's estimator contract; an explainer holds no nested estimators.

        Returns
        -------
        dict
            Keyword → value for every ``__init__`` keyword of the class and its bases; the model (the
            first, positional argument) is not a hyper-parameter and is left out.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Explainer":
        """Set hyper-parameters, scikit-learn style (``sklearn.base.clone`` and parameter searches use it).

        Each value is checked against :meth:`parameter_constraints` first; a bad one changes nothing.
        On a fitted explainer, a parameter that changes the fit (anything but ``block_size``,
        ``test_batch_size`` and ``progress``, which only batch the scoring or show it) discards the fit, so that no explanation
        ever mixes the new parameters with the old fit: call :meth:`fit` again.

        Parameters
        ----------
        **params
            Hyper-parameters by name, as in ``__init__``.

        Returns
        -------
        Explainer
            ``self``.

        Raises
        ------
        InputError
            For a name that is not a hyper-parameter of the class, or a value its constraints refuse.
        """
        names = self._param_names()
        unknown = sorted(k for k in params if k not in names)
        if unknown:
            raise InputError(f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; its parameters are {names}.")
        constraints = self.parameter_constraints()
        for name, value in params.items():
            check_value(value, name, constraints[name], type(self).__name__)
        refit = {k for k, v in params.items() if not _equal(getattr(self, k), v)} - set(_SCORING_PARAMS)
        if refit and hasattr(self, "kernel_"):
            unfitted = type(self)(self.model, **{**self.get_params(), **params})
            self.__dict__.clear()
            self.__dict__.update(unfitted.__dict__)
        else:
            for name, value in params.items():
                setattr(self, name, value)
        return self

    def __sklearn_clone__(self) -> "Explainer":
        """An unfitted explainer of the same class on the same model (shared, not copied), with copied hyper-parameters."""
        return type(self)(self.model, **copy.deepcopy(self.get_params()))

    @classmethod
    def parameter_constraints(cls) -> dict[str, list[Constraint]]:
        """What each hyper-parameter accepts: this class's ``_parameter_constraints`` merged with its bases'.

        Returns
        -------
        dict of str to list of Constraint
            Keyword → the constraints of :mod:`representer._params`, any one of which a value must satisfy.
        """
        return constraints_of(cls)

    def validate_params(self) -> None:
        """Check every hyper-parameter against :meth:`parameter_constraints` (``fit`` does, before any work).

        Raises
        ------
        InputError
            Naming the first parameter whose value no constraint accepts, or a device this torch cannot use.
        """
        validate_params(type(self).__name__, self.get_params(), self.parameter_constraints())
        check_device(self.device)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @property
    def options(self) -> EngineOptions:
        """The scoring engine's options (block sizes, device, dtype, progress bars) from the hyper-parameters."""
        if self.dtype not in _DTYPES:
            raise InputError(f"`dtype` must be 'float32' or 'float64'; got {self.dtype!r}.")
        return EngineOptions(
            block_size=int(self.block_size),
            test_batch_size=int(self.test_batch_size),
            device=str(self.device),
            dtype=_DTYPES[self.dtype],
            progress=self.progress,
        )

    @property
    def head_device(self) -> torch.device:
        """Device for float64 head math."""
        return check_device(self.device)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> "Explainer":
        """Compute the training features once and fit the method's train-side state.

        Parameters
        ----------
        X : array, tensor, Dataset or DataLoader of n training inputs
            What the model takes (rows first), e.g. ``(n, C, H, W)`` images or ``(n, d)`` features; a
            dict of arrays for text batches.
        y : array-like of shape (n,)
            Training labels: class ids in ``[0, K)``, or class names with ``class_names``.

        Returns
        -------
        Explainer
            ``self``, fitted (learned attributes end in ``_``).

        Raises
        ------
        InputError
            A hyper-parameter outside its constraints (checked first), ``X`` of the wrong shape, dtype or with
            NaN, or ``y`` with the wrong length or unknown classes. The explainer is then left as it was.
        ModelError
            A model the method cannot explain (e.g. in training mode, or a tree ensemble for RPS-L2).
        """
        with self._fitting() as adapter:
            self.model_: ClassifierAdapter = adapter
            phi = adapter.features(X)
            self.y_ = self._labels(y, phi.shape[0])
            self.train_features_ = phi
            self._fit(phi, self.y_)
            self._finish_fit()
        return self

    @contextmanager
    def _fitting(self) -> Iterator[ClassifierAdapter]:
        """Validate the hyper-parameters, then yield the adapter; on any error restore the explainer as it was."""
        self.validate_params()
        adapter = as_adapter(self.model)
        self._check_model(adapter)
        before = dict(self.__dict__)
        try:
            yield adapter
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _check_model(self, adapter: ClassifierAdapter) -> None:
        """Refuse a model the method cannot explain with these hyper-parameters (before any work); a hook."""

    def _labels(self, y: Any, n: int | None) -> np.ndarray:
        """Record ``classes_`` and return ``y`` as class ids, warning about degenerate training sets.

        ``n`` is the number of rows of the data (``None`` when it cannot be told without iterating,
        as for a DataLoader: the rows are then matched to the labels batch by batch).
        """
        n_classes = self.model_.n_classes
        self.classes_ = ClassMapping.for_labels(y, n_classes, self.class_names)
        labels = self.classes_.encode(y, "y")
        if n is not None and labels.shape[0] != n:
            raise InputError(f"`y` has {labels.shape[0]} labels but the data has {n} rows; pass one label per row.")
        if labels.shape[0] == 1:
            warnings.warn("Only one training point: every explanation is that point.", RepresenterWarning, stacklevel=4)
        elif np.unique(labels).size == 1:
            warnings.warn(
                f"Every training label is class {labels[0]} ({self.classes_.name(int(labels[0]))}): one class cannot "
                "show which labels are wrong, and methods that use the labels see no contrast between classes.",
                RepresenterWarning,
                stacklevel=4,
            )
        return labels

    def _finish_fit(self) -> None:
        self.kernel_ = self._build_kernel().to(check_device(self.device), self.options.dtype)

    @property
    def n_train_(self) -> int:
        """The number of training points ``n`` (raises :class:`NotFittedError` before ``fit``)."""
        self._check_fitted()
        return int(self.train_features_.shape[0])

    def _check_fitted(self) -> None:
        if not hasattr(self, "kernel_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet (or `set_params` changed what its fit depends on); call "
                "`fit(X_train, y_train)` first."
            )

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
        """The class explained for each test point.

        Parameters
        ----------
        target : "predicted", "label", int, str or array-like of shape (m,)
            The model's predicted class, the given label (needs ``y``), one class id or name for every
            point, or one per point.
        phi : ndarray of shape (m, D)
            The test points' features.
        y : array-like of shape (m,), optional
            Their labels, for ``target="label"``.

        Returns
        -------
        ndarray of shape (m,)
            Class ids, int64.

        Raises
        ------
        InputError
            An unknown class name or id, ``"label"`` without ``y``, or an array of the wrong length.
        """
        m = phi.shape[0]
        if isinstance(target, str) and target == "predicted":
            return predicted_class(self.model_.logits_from_features(phi))
        if isinstance(target, str) and target == "label":
            if y is None:
                raise InputError("`target='label'` needs the test labels: pass `y=` to explain/attribute.")
            return self._encode(y, "y", m)
        if isinstance(target, (str, bool, np.bool_)) and target not in self.classes_.names:
            raise InputError(
                f"`target` must be 'predicted', 'label', a class id, a class name or an array; got {target!r} "
                f"(class names: {list(self.classes_.names)[:6]})."
            )
        if np.isscalar(target):
            target = [target] * m
        return self._encode(target, "target", m)

    def _encode(self, labels: Any, what: str, m: int) -> np.ndarray:
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        ids = self.classes_.encode(labels, what)
        if ids.shape[0] != m:
            raise InputError(f"`{what}` has {ids.shape[0]} entries but `X` has {m} rows; pass one per row.")
        return ids

    def _prepare(self, X: Any, target: Any, y: Any) -> tuple[np.ndarray, TestFactors]:
        self._check_fitted()
        phi = self.model_.features(X)
        tgt = self.resolve_target(target, phi, y)
        return tgt, self._test_factors(phi, tgt)

    def explain(self, X: Any, top_k: int = 10, target: Any = "predicted", y: Any = None) -> Explanation:
        """The ``top_k`` most excitatory and most inhibitory training points for each row of ``X``.

        Memory stays bounded: the training set is scored in blocks with a running top-k of both
        signs; the ``m × n`` scores are never stored.

        Parameters
        ----------
        X : array, tensor, Dataset or DataLoader of m inputs
            Points to explain, in the form ``fit`` took (rows first: one example is ``X[None]``).
        top_k : int, default 10
            Training points kept per sign (all ``n`` if larger, with a warning).
        target : "predicted", "label", int, str or array-like of shape (m,), default "predicted"
            The class explained (:meth:`resolve_target`).
        y : array-like of shape (m,), optional
            Labels of ``X``, for ``target="label"``.

        Returns
        -------
        Explanation
            ``excitatory`` / ``inhibitory`` :class:`~representer.TopK` with ``indices`` (int64) and
            ``scores`` of shape ``(m, top_k)`` (excitatory scores descending, inhibitory ascending), and
            ``target`` of shape ``(m,)``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        InputError
            ``X`` of the wrong shape or dtype, a ``top_k`` that is not a positive integer, or a bad ``target``.
        """
        k = int(check_value(top_k, "top_k", [positive(int)]))
        self._check_fitted()
        if k > self.n_train_:
            warnings.warn(
                f"top_k={k} exceeds the {self.n_train_} training points; each side lists all {self.n_train_}.",
                RepresenterWarning,
                stacklevel=2,
            )
            k = self.n_train_
        tgt, test = self._prepare(X, target, y)
        exc_i, exc_s, inh_i, inh_s = engine_top_k(self.kernel_, test, k, self.options)
        return Explanation(
            excitatory=TopK(exc_i, exc_s),
            inhibitory=TopK(inh_i, inh_s),
            target=tgt,
            method=self.name,
            meta={"top_k": k, "params": persistence.jsonable(self.get_params())},
        )

    def attribute(self, X: Any, target: Any = "predicted", y: Any = None) -> np.ndarray:
        """Every training point's attribution to every row of ``X``: the dense test × train matrix.

        Opt-in, since it holds ``m × n`` numbers; :meth:`attribution_blocks` streams it instead.

        Parameters
        ----------
        X : array, tensor, Dataset or DataLoader of m inputs
            Points to explain.
        target : "predicted", "label", int, str or array-like of shape (m,), default "predicted"
            The class explained (:meth:`resolve_target`).
        y : array-like of shape (m,), optional
            Labels of ``X``, for ``target="label"``.

        Returns
        -------
        ndarray of shape (m, n)
            ``A[t, i]`` = attribution of training point ``i`` to the explained class of point ``t``
            (positive = excitatory), in the explainer's ``dtype``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        InputError
            ``X`` of the wrong shape or dtype, or a bad ``target``.
        """
        _, test = self._prepare(X, target, y)
        return dense(self.kernel_, test, self.options)

    def attribution_blocks(self, X: Any, target: Any = "predicted", y: Any = None) -> Iterator[tuple[int, int, Any]]:
        """The blocks of :meth:`attribute`, one at a time, without storing the whole matrix.

        Parameters
        ----------
        X, target, y
            As for :meth:`attribute`.

        Yields
        ------
        tuple of (int, int, Tensor of shape (b_test, b_train))
            ``(test_start, train_start, scores)``: ``scores`` is the block
            ``A[test_start:test_start + b_test, train_start:train_start + b_train]``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        _, test = self._prepare(X, target, y)
        yield from stream_blocks(self.kernel_, test, self.options)

    def self_influence(self) -> np.ndarray:
        """Each training point's score for data debugging: larger = more suspicious.

        What it is depends on the method (its class docstring): e.g. RPS-L2's ``|α_{i,y_i}|``,
        influence's ``g_iᵀH⁻¹g_i``, DualView's ``Σ_c |β_ic|``. :func:`~representer.find_label_issues`
        ranks by it.

        Returns
        -------
        ndarray of shape (n,)
            float64 scores, in training order.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        return np.asarray(self._self_influence(), dtype=np.float64)

    def ranking_tiebreak(self) -> np.ndarray | None:
        """A secondary score ordering points whose :meth:`self_influence` ties (larger first).

        Methods whose self-influence takes few distinct values (DualView's points at the bound) give
        one, so that a label ranking never falls back to index order.

        Returns
        -------
        ndarray of shape (n,) or None
            The tie-break score, or ``None`` when the method needs none.
        """
        return None

    # ------------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays a save holds.

        Returns
        -------
        dict of str to ndarray
            ``train_features_`` ``(n, D)``, ``y_`` ``(n,)`` and the method's ``_fitted_arrays``.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        arrays = {"train_features_": self.train_features_, "y_": self.y_}
        arrays.update({name: getattr(self, name) for name in self._fitted_arrays})
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write the fitted explainer to a folder: ``state.safetensors`` + ``config.json`` (no pickle).

        The folder is replaced as a whole and atomically: a save that fails or is killed leaves the
        previous one loadable. Fingerprints of the model, every array and every parameter are
        written with it; see :mod:`representer.methods.persistence`.

        Parameters
        ----------
        path : str or Path
            The folder: new, empty, or a previous save (other files are refused, never deleted).

        Returns
        -------
        Path
            The folder written.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        InputError
            ``path`` is a file, a symbolic link, or a folder holding other files.
        OutputError
            The disk is full or the folder cannot be written (the previous save is kept).
        """
        self._check_fitted()
        return persistence.save_explainer(self, path)

    @classmethod
    def _restore(cls, model: Any, config: dict, arrays: dict[str, np.ndarray]) -> "Explainer":
        try:
            explainer = cls(model, **config["params"])
            explainer.validate_params()
        except (TypeError, InputError) as exc:
            raise FileFormatError(
                f"The saved parameters of {cls.__name__} are not valid for this version of representer ({exc}); fit the "
                "explainer again."
            ) from exc
        explainer.model_ = as_adapter(model)
        persistence.check_model(config, explainer.model_)
        for name, value in arrays.items():
            setattr(explainer, name, value)
        explainer.classes_ = ClassMapping.from_dict(config["classes"])
        explainer.classes_.check_classes(explainer.model_.n_classes)
        explainer.fit_report_ = config["fit_report_"]
        explainer._finish_fit()
        return explainer


class _RefitExplainer(Explainer):
    """An explainer whose head is refit, so that ``fit`` can also report the refit's fidelity on held-out data.

    Subclasses implement ``fidelity(X) -> dict`` (how well the refit reproduces the model on ``X``).
    """

    def fit(self, X: Any, y: Any, *, eval_X: Any = None) -> "_RefitExplainer":
        """Fit the explainer and, with ``eval_X``, report how faithful the refit head is on it.

        Parameters
        ----------
        X, y
            As for :meth:`Explainer.fit`.
        eval_X : array-like of m inputs, optional
            Held-out inputs: adds the fidelity on them to ``fit_report_["eval"]``.

        Returns
        -------
        _RefitExplainer
            ``self``, fitted.

        Raises
        ------
        InputError, ModelError
            As for :meth:`Explainer.fit`.
        """
        with self._fitting():
            super().fit(X, y)
            if eval_X is not None:
                self.fit_report_["eval"] = self.fidelity(eval_X)
        return self

    @abstractmethod
    def fidelity(self, X: Any) -> dict[str, float]: ...


def load(path: str | Path, model: Any, *, class_names: Sequence[str] | None = None) -> Explainer:
    """Load an explainer saved with :meth:`Explainer.save`, attached to ``model``.

    ``model`` must be the model the explainer was fitted on: every parameter and buffer of a
    network (not only its head), a booster's trees, are fingerprinted, and any difference is refused.

    Parameters
    ----------
    path : str or Path
        The folder :meth:`Explainer.save` wrote.
    model : ClassifierAdapter or nn.Module
        The model it was fitted on.
    class_names : list of str, optional
        When given, must equal the saved class names.

    Returns
    -------
    Explainer
        Fitted, of the saved class, with the saved hyper-parameters.

    Raises
    ------
    StaleStateError
        ``model`` differs from the fitted one (naming the differing parameters), fitted arrays or
        parameters were edited since the save, or ``class_names`` differ from the saved ones.
    FileFormatError
        A damaged file, or one from a newer major format.
    """
    folder = Path(path)
    config = read_config(folder)
    arrays = persistence.read_state(folder)
    persistence.check_arrays(config, arrays, folder)
    explainer = _explainer_class(config["class"])._restore(model, config, arrays)
    persistence.check_classes(explainer.classes_, class_names)
    return explainer


def _explainer_class(name: str) -> type[Explainer]:
    import representer.methods  # noqa: F401  (registers every explainer subclass)

    pending = list(Explainer.__subclasses__())
    while pending:
        klass = pending.pop()
        if klass.__name__ == name:
            return klass
        pending.extend(klass.__subclasses__())
    raise FileFormatError(
        f"The saved explainer class {name!r} is not known to representer {__version__}; upgrade representer, or fit again."
    )
