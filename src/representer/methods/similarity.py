"""Similarity baselines: gradient similarity of the head (SIM) and feature-space nearest neighbours (kNN).

Both are bilinear forms scored by the shared engine through a
:class:`~representer.engine.CoefficientKernel` ``a(t, i) = sign_t · coef[i, out_t] · ⟨u_t, v_i⟩``.

**SIM** (Charpiat et al. 2019, as evaluated by DualView, spec §4.5 and §7.18), restricted to the
linear head. The gradient of a logit with respect to the head parameters is ``∂z_c/∂Θ = e_c ⊗ x̃``
(``x̃ = [φ; 1]`` when the head has a bias, ``φ`` otherwise). The training gradient is taken for the
logit of the training label ``y_i``, the test gradient for the explained class ``c``::

    a(t, i, c) = ⟨g_i / ‖g_i‖, g_t⟩ = [y_i = c] · ⟨x̃_i, x̃_t⟩ / ‖x̃_i‖            (softmax head)
    a(t, i, c) = s(y_i) s(c) · ⟨x̃_i, x̃_t⟩ / ‖x̃_i‖,   s(1) = +1, s(0) = −1     (one-logit head)

Only the training gradient is normalised (one-sided, as in the DualView code); ``cosine=True``
also divides by ``‖g_t‖ = ‖x̃_t‖``, which rescales each test row without changing its ranking. On a
softmax head every training point of another class scores exactly 0: the head's logit gradients of
different classes are orthogonal.

**kNN** (``FeatureSimilarity``): class-agnostic similarity of the features ``φ`` (no ones column);
the explained class is ignored. ``metric="dot"`` scores ``⟨φ_t, φ_i⟩``; ``"cosine"`` scores
``⟨φ_t, φ_i⟩ / (‖φ_t‖‖φ_i‖)`` (0 for an all-zero vector, as scikit-learn's ``normalize``);
``"l2"`` scores ``−‖φ_t − φ_i‖²``, which ranks by ``−distance``. It runs through the engine as the
bilinear form of augmented vectors (features centred at the training mean ``μ`` to limit float32
cancellation)::

    ⟨[2(φ_t − μ), −1, −‖φ_t − μ‖²], [φ_i − μ, ‖φ_i − μ‖², 1]⟩ = −‖φ_t − φ_i‖².

**Self-influence of a baseline.** Neither baseline has a per-training-point loss effect, so each
reports the debugging score the baseline naturally offers (larger = more suspicious):

* SIM: ``‖g_i‖ = ‖x̃_i‖``, the training point's one-sided self-similarity ``a(i, i, y_i)``
  (the same under ``cosine=True``, whose self-similarity is identically 1 and carries no ranking);
* kNN: the fraction of the ``n_neighbors`` most similar *other* training points (under the chosen
  metric) whose label differs from ``y_i`` — the classic nearest-neighbour label-noise score.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .._params import Boolean, Options, positive
from ..engine import CoefficientKernel, TestFactors
from ..engine import top_k as engine_top_k
from ..errors import InputError, RepresenterWarning
from .base import Explainer
from ..head import output_and_sign

_METRICS = ("cosine", "dot", "l2")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class GradientSimilarity(Explainer):
    """SIM: similarity of the explained logit's head gradient to each training point's label-logit gradient.

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        The classifier to explain (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    cosine : bool, default False
        Also normalise the test gradient (symmetric cosine similarity); by default one-sided (spec §4.5).
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).

    Attributes
    ----------
    coef_ : ndarray of shape (n, K)
        ``±1/‖x̃_i‖`` in the column of the training label (binary head: one column, signed by the label),
        zeros elsewhere.
    """

    name = "sim"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ("coef_",)
    _parameter_constraints: ClassVar[dict[str, list]] = {"cosine": [Boolean()]}

    def __init__(self, model: Any, *, cosine: bool = False, **engine: Any) -> None:
        super().__init__(model, **engine)
        self.cosine = cosine

    def _head_inputs(self, phi: np.ndarray) -> np.ndarray:
        """``x̃ = [φ, 1]`` for a head with bias (the bias is a parameter too), ``φ`` otherwise."""
        return np.concatenate([phi, np.ones((phi.shape[0], 1))], axis=1) if self.model_.has_bias else phi

    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        norms = np.linalg.norm(self._head_inputs(phi), axis=1)
        inverse_norms = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        n = phi.shape[0]
        if self.model_.n_outputs == 1:
            self.coef_ = (np.where(y == 1, 1.0, -1.0) * inverse_norms)[:, None]
        else:
            self.coef_ = np.zeros((n, self.model_.n_outputs))
            self.coef_[np.arange(n), y] = inverse_norms
        self.fit_report_ = {"zero_gradients": int((norms == 0).sum())}

    def _build_kernel(self) -> CoefficientKernel:
        return CoefficientKernel(x=torch.as_tensor(self._head_inputs(self.train_features_)), coef=torch.as_tensor(self.coef_))

    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors:
        out, sign = output_and_sign(target, self.model_.n_outputs)
        x = self._head_inputs(phi)
        return TestFactors({"x": torch.as_tensor(_unit_rows(x) if self.cosine else x)}, out, sign)

    def _self_influence(self) -> np.ndarray:
        return np.linalg.norm(self._head_inputs(self.train_features_), axis=1)


class FeatureSimilarity(Explainer):
    """kNN in feature space: training points ranked by similarity of ``φ`` to the test point's ``φ``.

    Scores do not depend on the explained class (``target`` only labels the explanation).

    Parameters
    ----------
    model : TorchClassifier, Features or nn.Module
        The classifier to explain (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    metric : {"cosine", "dot", "l2"}, default "cosine"
        Similarity of features: cosine, dot product, or ``−‖φ_t − φ_i‖²`` (``"l2"``).
    n_neighbors : int, default 10
        Neighbours whose labels :meth:`self_influence` compares with a point's own (label disagreement).
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see :class:`Explainer`).

    Attributes
    ----------
    center_ : ndarray of shape (D,)
        The training mean used by ``"l2"`` (zeros otherwise).
    """

    name = "knn"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ("center_",)
    _parameter_constraints: ClassVar[dict[str, list]] = {"metric": [Options(_METRICS)], "n_neighbors": [positive(int)]}

    def __init__(
        self, model: Any, *, metric: Literal["cosine", "dot", "l2"] = "cosine", n_neighbors: int = 10, **engine: Any
    ) -> None:
        super().__init__(model, **engine)
        self.metric = metric
        self.n_neighbors = n_neighbors

    def _fit(self, phi: np.ndarray, y: np.ndarray) -> None:
        if self.n_neighbors >= phi.shape[0]:
            raise InputError(
                f"`n_neighbors` must be an integer in [1, n_train − 1] = [1, {phi.shape[0] - 1}]; got {self.n_neighbors!r}."
            )
        counts = np.bincount(y, minlength=self.model_.n_classes)
        small = [int(c) for c in np.flatnonzero(counts) if counts[c] <= self.n_neighbors]
        if small:
            warnings.warn(
                f"Classes {small[:5]} have at most n_neighbors={self.n_neighbors} training points, so their points "
                "always have neighbours of other classes and the label-noise score ranks them as suspicious.",
                RepresenterWarning,
                stacklevel=4,
            )
        self.center_ = phi.mean(axis=0) if self.metric == "l2" else np.zeros(phi.shape[1])
        self.fit_report_ = {"metric": self.metric}

    def _train_vectors(self) -> np.ndarray:
        phi = self.train_features_
        if self.metric == "dot":
            return phi
        if self.metric == "cosine":
            return _unit_rows(phi)
        c = phi - self.center_
        return np.concatenate([c, (c * c).sum(axis=1, keepdims=True), np.ones((c.shape[0], 1))], axis=1)

    def _test_vectors(self, phi: np.ndarray) -> np.ndarray:
        if self.metric == "dot":
            return phi
        if self.metric == "cosine":
            return _unit_rows(phi)
        c = phi - self.center_
        return np.concatenate([2 * c, -np.ones((c.shape[0], 1)), -(c * c).sum(axis=1, keepdims=True)], axis=1)

    def _build_kernel(self) -> CoefficientKernel:
        n = self.train_features_.shape[0]
        return CoefficientKernel(x=torch.as_tensor(self._train_vectors()), coef=torch.ones(n, 1, dtype=torch.float64))

    def _test_factors(self, phi: np.ndarray, target: np.ndarray) -> TestFactors:
        m = phi.shape[0]
        return TestFactors(
            {"x": torch.as_tensor(self._test_vectors(phi))},
            torch.zeros(m, dtype=torch.long),
            torch.ones(m, dtype=torch.float64),
        )

    def neighbors(self) -> np.ndarray:
        """Each training point's most similar other training points (by ``metric``), most similar first.

        Returns
        -------
        ndarray of shape (n, n_neighbors)
            Training indices (a point is never its own neighbour).

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        k = int(self.n_neighbors)
        test = self._test_factors(self.train_features_, self.y_)
        ranked = engine_top_k(self.kernel_, test, k + 1, self.options)[0]
        is_self = ranked == np.arange(ranked.shape[0])[:, None]
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones_like(ranked, dtype=bool)
        keep[np.arange(ranked.shape[0]), drop] = False
        return ranked[keep].reshape(ranked.shape[0], k)

    def _self_influence(self) -> np.ndarray:
        return (self.y_[self.neighbors()] != self.y_[:, None]).mean(axis=1)
