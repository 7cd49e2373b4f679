r"""Bias-free Crammer–Singer multiclass SVM by exact dual coordinate ascent, returning the duals.

Textbook problem (Crammer & Singer 2001), features ``z_i ∈ R^D``, labels ``y_i ∈ {0..K-1}``::

    min_{W ∈ R^{K×D}}  ½ Σ_c ||w_c||² + C Σ_i ξ_i,
    ξ_i = max(0, max_{c ≠ y_i} 1 − (w_{y_i} − w_c)ᵀ z_i).

Its dual, with multipliers ``α_ic ≥ 0`` (``α_{i,y_i} = 0``) and ``Σ_c α_ic ≤ C``::

    max_α  Σ_{i,c} α_ic − ½ ||W(α)||²,     W(α) = Σ_i β_i z_iᵀ,
    β_{i,y_i} = Σ_{c≠y_i} α_ic,   β_ic = −α_ic (c ≠ y_i),   so every row of β sums to 0.

DualView's reference code (Shark 4.0.0) solves the same problem with a ½ relative margin,
``½ (w_{y_i} − w_c)ᵀ z_i ≥ 1 − ξ_i``. Substituting ``W_shark = 2 W_textbook`` shows that Shark with
``C`` is the textbook problem with ``C / 4``, and then ``α_shark = 4 α_textbook``,
``β_shark = 4 β_textbook``, ``W_shark = 2 W_textbook = ½ Σ_i β_shark,i z_iᵀ``, and both objectives
(primal, dual, gap) are 4× the textbook ones. ``convention="shark"`` (the default) takes the
paper's/Shark's ``C`` (the DualView experiments use ``C = 0.001``) and returns everything in Shark's
scale, so the attributions ``β_ic z_iᵀ z_t`` equal the reference code's.

The dual gradient ``∂D/∂α_ic = 1 − (w_{y_i} − w_c)ᵀ z_i`` is the *same number* in both
conventions, so ``tol`` (a bound on the largest per-example KKT violation, measured in these
gradient units exactly as LIBLINEAR's ``eps`` and Shark's ``minAccuracy``) means the same thing in
either one.

Solver: dual coordinate ascent over examples in a fresh random order each epoch (numba's
generator, seeded with ``seed``, so runs are deterministic); each example's K-variable sub-problem
is solved exactly in closed form (see :mod:`representer.solvers._cs_kernels`). Rows locked at their
bounds and, within a row, classes that cannot enter its solution are shrunk (LIBLINEAR's MCSVM_CS
rules); everything is revived each time the active rows' violation falls below a threshold that
starts at ``max(10 tol, 1)`` and halves down to ``tol`` (LIBLINEAR's schedule). Between epochs,
*face steps* run conjugate gradients on the quadratic left when every variable at a bound is held
there, and project back into the feasible set when CG would leave it (Moré–Toraldo's GPCG idea):
coordinate ascent identifies which variables are free, CG then converges on them in a few dozen
iterations where coordinate ascent's linear tail needs thousands of epochs. Face steps are rationed
so that their multiply-adds do not exceed those of the epochs between them. Convergence is only
declared after an unshrunk pass *and* an exact recomputation of ``W = Σ β z`` and of every KKT
violation. Accumulation is float64 throughout; the inner loops are compiled with numba.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._validation import as_float_array, as_labels, check_positive
from ..errors import InputError

Convention = Literal["shark", "textbook"]

_SHARK_C_FACTOR = 4.0
"""Shark's C is 4× the textbook C; Shark's α, β and objectives are 4× the textbook ones."""
_SHARK_W_FACTOR = 2.0
"""Shark's weight matrix is 2× the textbook one."""
_FACE_STEPS = True
"""Interleave CG face steps with the epochs (off only to compare against plain coordinate ascent)."""
_FACE_RATIO = 1.0
"""A face step runs once the epochs since the last one cost this many times its multiply-adds."""


@dataclass(frozen=True)
class CrammerSingerResult:
    """Solution of the bias-free Crammer–Singer SVM, in the convention that was asked for.

    Attributes:
        alpha: ``(n, K)`` dual multipliers ``α_ic ≥ 0``, with ``α_{i,y_i} = 0`` and
            ``Σ_c α_ic ≤ C`` (the caller's ``C``).
        beta: ``(n, K)`` with ``β_{i,y_i} = Σ_{c≠y_i} α_ic`` and ``β_ic = −α_ic`` otherwise; rows sum
            to 0. DualView's attribution of training point ``i`` to class ``c`` is ``β_ic z_iᵀ z_t``.
        weight: ``(K, D)`` primal weights: ``Σ_i β_i z_iᵀ`` in the textbook convention and
            ``½ Σ_i β_i z_iᵀ`` (= 2 × textbook weights) in the Shark convention.
        n_iter: epochs run (passes over the active examples).
        kkt_violation: largest per-example KKT violation at the returned solution (gradient units,
            identical in both conventions), recomputed exactly from ``beta``.
        primal_objective: primal objective at ``weight`` in the chosen convention.
        dual_objective: dual objective at ``alpha`` in the chosen convention.
        duality_gap: ``primal_objective − dual_objective`` (≥ 0 up to rounding).
        n_support: ``(K,)`` number of support vectors (rows with any ``α_ic > 0``) per label ``y_i``.
        converged: whether ``kkt_violation ≤ tol`` was reached within ``max_epochs``.
    """

    alpha: np.ndarray
    beta: np.ndarray
    weight: np.ndarray
    n_iter: int
    kkt_violation: float
    primal_objective: float
    dual_objective: float
    duality_gap: float
    n_support: np.ndarray
    converged: bool


def solve_crammer_singer(
    Z: np.ndarray,
    y: np.ndarray,
    n_classes: int | None = None,
    *,
    C: float = 0.001,
    convention: Convention = "shark",
    tol: float = 1e-3,
    max_epochs: int = 10_000,
    seed: int = 0,
    shrinking: bool = True,
    warm_start: np.ndarray | None = None,
) -> CrammerSingerResult:
    """Solve the bias-free Crammer–Singer SVM on features ``Z`` and return its dual variables.

    Args:
        Z: ``(n, D)`` features (DualView uses z-scored penultimate features). No bias is fitted;
            append a column of ones to fit a (regularised) one. A row ``z_i = 0`` never affects
            ``W`` and always violates its margin, so any ``α_i`` with ``Σ_c α_ic = C`` is optimal;
            it gets ``α_ic = C / (K − 1)`` for every ``c ≠ y_i``.
        y: ``(n,)`` integer labels in ``[0, n_classes)``.
        n_classes: number of classes ``K``; defaults to ``max(y) + 1``. Classes absent from ``y``
            still get a weight row (a non-positive combination of the data).
        C: box constraint, in the chosen ``convention`` (default 0.001, the DualView paper's value).
        convention: ``"shark"`` (DualView reference code: ½-margin, textbook ``C/4``, ``α``/``β``
            ×4, ``W`` ×2, objectives ×4) or ``"textbook"``. See the module docstring.
        tol: stop when every example's KKT violation is ≤ ``tol`` (gradient units, see module
            docstring). Shark's default is 1e-3, scikit-learn/LIBLINEAR's 1e-4.
        max_epochs: cap on passes over the (active) examples; a ``RuntimeWarning`` is raised when
            it is reached before ``tol``.
        seed: seed of the generator that orders the examples in each epoch.
        shrinking: skip examples whose variables are locked at their bounds, and within an
            example the classes that cannot enter its solution, until a final unshrunk pass
            (faster; same solution).
        warm_start: ``(n, K)`` starting ``α`` in the chosen convention, e.g. ``result.alpha`` from a
            previous solve. It is made feasible: negative entries and ``α_{i,y_i}`` are set to 0 and
            rows with ``Σ_c α_ic > C`` are scaled down to sum to ``C``. Restarting from a looser
            solve at the same ``C`` saves the epochs already spent; starting from another ``C``'s
            solution (e.g. ``result.alpha * C_new / C_old`` in a sweep) gives the same optimum but
            need not save epochs.

    Returns:
        :class:`CrammerSingerResult`.

    Raises:
        InputError: on bad shapes, NaN/inf, labels out of range, ``C ≤ 0``, an unknown convention
            or an inconsistent ``warm_start``.
        ImportError: when numba is missing.
    """
    Z = np.ascontiguousarray(as_float_array(Z, "Z", ndim=2))
    n, D = Z.shape
    y = as_labels(y, "y", n=n)
    if y.min() < 0:
        raise InputError(f"`y` has negative label {y.min()}; labels must be integers in [0, n_classes).")
    if n_classes is None:
        n_classes = int(y.max()) + 1
    if int(n_classes) != n_classes or n_classes < 1:
        raise InputError(f"`n_classes` must be a positive integer; got {n_classes!r}.")
    K = int(n_classes)
    y = as_labels(y, "y", n=n, n_classes=K)
    C_user = check_positive(C, "C")
    tol = check_positive(tol, "tol")
    if int(max_epochs) != max_epochs or max_epochs < 1:
        raise InputError(f"`max_epochs` must be a positive integer; got {max_epochs!r}.")
    if convention not in ("shark", "textbook"):
        raise InputError(f'`convention` must be "shark" or "textbook"; got {convention!r}.')
    shark = convention == "shark"
    C_text = C_user / _SHARK_C_FACTOR if shark else C_user

    if K == 1:
        zeros = np.zeros((n, 1))
        return CrammerSingerResult(
            alpha=zeros, beta=zeros.copy(), weight=np.zeros((1, D)), n_iter=0, kkt_violation=0.0,
            primal_objective=0.0, dual_objective=0.0, duality_gap=0.0,
            n_support=np.zeros(1, dtype=np.int64), converged=True,
        )

    kernels = _load_kernels()
    sq_norm = np.einsum("ij,ij->i", Z, Z)
    alpha0 = _initial_alpha(warm_start, n, K, y, C_text, _SHARK_C_FACTOR if shark else 1.0)
    alpha0[sq_norm == 0.0] = C_text / (K - 1)
    alpha0[np.arange(n), y] = 0.0
    beta = _beta_from_alpha(alpha0, y)

    kernels.seed_generator(seed)
    W = kernels.weights_from_beta(Z, beta)
    unshrink_below = max(10.0 * tol, 1.0)
    violation = np.inf
    n_iter = 0
    while n_iter < max_epochs and violation > tol:
        epochs, reached, unshrink_below = kernels.run_epochs(
            Z, y, sq_norm, beta, W, C_text, tol, int(max_epochs) - n_iter, shrinking, unshrink_below,
            _FACE_STEPS, _FACE_RATIO,
        )
        n_iter += epochs
        if reached or n_iter >= max_epochs:
            W = kernels.weights_from_beta(Z, beta)
            G = kernels.gradients(Z, y, W)
            violation = float(_kkt_violations(G, y, beta, C_text).max())
    converged = violation <= tol

    alpha = _alpha_from_beta(beta, y)
    if not converged:
        warnings.warn(
            f"Crammer–Singer solver stopped at max_epochs={max_epochs} with KKT violation "
            f"{violation:.3g} > tol={tol:g}; raise `max_epochs` or loosen `tol`.",
            RuntimeWarning,
            stacklevel=2,
        )
    primal, dual = _objectives(G, y, alpha, W, C_text)
    scale = _SHARK_C_FACTOR if shark else 1.0
    support = alpha.max(axis=1) > 0.0
    return CrammerSingerResult(
        alpha=alpha * scale,
        beta=beta * scale,
        weight=W * (_SHARK_W_FACTOR if shark else 1.0),
        n_iter=n_iter,
        kkt_violation=violation,
        primal_objective=primal * scale,
        dual_objective=dual * scale,
        duality_gap=(primal - dual) * scale,
        n_support=np.bincount(y[support], minlength=K).astype(np.int64),
        converged=converged,
    )


def _load_kernels():
    """The numba kernels, imported on first use (compiling them is not free)."""
    from . import _cs_kernels

    return _cs_kernels


def _initial_alpha(warm_start, n: int, K: int, y: np.ndarray, C_text: float, scale: float) -> np.ndarray:
    """Feasible textbook ``α`` from a warm start given in the caller's convention (or zeros)."""
    if warm_start is None:
        return np.zeros((n, K))
    alpha = as_float_array(warm_start, "warm_start", ndim=2)
    if alpha.shape != (n, K):
        raise InputError(
            f"`warm_start` must have shape (n, n_classes) = ({n}, {K}); got {alpha.shape}. "
            "Pass `result.alpha` from a solve on the same data."
        )
    alpha = np.maximum(alpha / scale, 0.0)
    alpha[np.arange(n), y] = 0.0
    row_sum = alpha.sum(axis=1)
    over = row_sum > C_text
    alpha[over] *= (C_text / row_sum[over])[:, None]
    return alpha


def _beta_from_alpha(alpha: np.ndarray, y: np.ndarray) -> np.ndarray:
    beta = -alpha
    rows = np.arange(alpha.shape[0])
    beta[rows, y] = alpha.sum(axis=1) - alpha[rows, y]
    return beta


def _alpha_from_beta(beta: np.ndarray, y: np.ndarray) -> np.ndarray:
    alpha = np.maximum(-beta, 0.0)
    alpha[np.arange(beta.shape[0]), y] = 0.0
    return alpha


def _kkt_violations(G: np.ndarray, y: np.ndarray, beta: np.ndarray, C_text: float) -> np.ndarray:
    """Per-example ``max_m G_im − min_{m: β_im < u_im} G_im`` (0 for examples with ``z_i = 0``).

    ``G_im = (1 − δ_{m,y_i}) + w_mᵀ z_i`` is the gradient of the textbook β-form dual.
    """
    upper = np.zeros_like(beta)
    upper[np.arange(beta.shape[0]), y] = C_text
    free_min = np.where(beta < upper, G, np.inf).min(axis=1)
    return np.maximum(G.max(axis=1) - free_min, 0.0)


def _objectives(G: np.ndarray, y: np.ndarray, alpha: np.ndarray, W: np.ndarray, C_text: float) -> tuple[float, float]:
    """Textbook primal ``½||W||² + C Σ_i ξ_i`` (``ξ_i = max_m G_im − G_{i,y_i}``) and dual ``Σ α − ½||W||²``."""
    half_norm = 0.5 * float(np.sum(W * W))
    slack = G.max(axis=1) - G[np.arange(G.shape[0]), y]
    return half_norm + C_text * float(slack.sum()), float(alpha.sum()) - half_norm
