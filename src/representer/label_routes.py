"""The routes of :func:`representer.find_label_issues` for a model (not a fitted explainer).

Each route turns ``(model, X, y[, checkpoints])`` into one suspicion score per training point
(larger = more likely mislabelled) plus a record of what it did. ``method="auto"`` picks the route
that the label-issue benchmark (``benchmarks/bench_label_issues.py``, ``docs/label_issues.md``)
found best for what it is given:

=======================================  ==================================================  ==========
given                                    route                                               caveat
=======================================  ==================================================  ==========
a tree ensemble (booster)                ``trajectory-loss`` over its boosting rounds        —
a network with ≥ 2 checkpoints that      ``trajectory-loss`` over the checkpoints            —
fits ≥ 95 % of its labels (memorised)
a network with ≥ 2 checkpoints that      ``trajectory-margin`` over the checkpoints          —
fits < 95 % of its labels
a network / features, no checkpoints     ``cross-fit`` (K convex head refits)                if it fits ≥ 95 % of its labels
=======================================  ==================================================  ==========

Routes (``method=``):

* ``"trajectory-loss"``: the loss on the given label averaged over the checkpoints at log-spaced
  epochs (:meth:`~representer.trajectory.Trajectory.mean_loss`); for boosters, over boosting rounds.
* ``"trajectory-margin"``: area under the margin over the same trajectory, negated. The margin reads
  the class competing with the given label, which separates flips to a confusable class better than
  the loss while the network has not memorised them; once it has, the late epochs' large margins (a
  margin is unbounded, a loss is bounded below by 0) swamp the average, so memorised networks get
  ``trajectory-loss``.
* ``"tracin"``: TracIn self-influence ``Σ_c η_c ‖∇ℓ_i(θ_c)‖²`` of the head (``params=None``; a closed
  form from one forward pass per checkpoint) or of the named layers (:class:`~representer.TracInCP`).
* ``"cross-fit"``: ``1 − p̂_{i,y_i}`` with ``p̂`` held out by K-fold refits of an L2 head on the
  frozen features (:mod:`representer.crossfit`).
* ``"loss"``: the final model's loss on the given label.
* ``"influence"``: head influence self-influence ``g_iᵀH⁻¹g_i`` (:class:`~representer.InfluenceFunction`).
* ``"rps-l2"``: ``|α_{i,y_i}|`` of the paper's Eq. (3) student fitted to the given labels
  (:class:`~representer.RPSL2` with ``refit="labels"``).
* ``"rps-lje"``: ``|w_iᵀφ̃_i|`` (:class:`~representer.RPSLJE`).
* ``"dualview"``: ``Σ_c |β_ic|`` of a Crammer–Singer surrogate at a ``C`` that leaves most points off
  the bound (``C = 60 / n``, the paper's ``C·n``, raised ×10 while more than half sit at the bound),
  ties broken by the surrogate's margin.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checkpoints import Checkpoint, as_checkpoints
from .crossfit import MEMORISED_SHARE
from .errors import InputError, ModelError
from .models import ClassifierAdapter, TorchClassifier, TreeEnsemble, as_adapter, predicted_class
from .trajectory import Trajectory, boosting_trajectory, label_statistics, network_trajectory

#: Folds of the cross-fit route.
CROSSFIT_FOLDS = 5
#: ``C · n`` of DualView's ranker (the paper's C = 1e-3 at n = 60,000), and the share of points at the
#: bound above which ``C`` is raised.
DUALVIEW_CN = 60.0
DUALVIEW_MAX_AT_BOUND = 0.5
#: Largest ``K·(D+1)`` for which the influence route uses the exact head Hessian (else EK-FAC).
EXACT_INFLUENCE_PARAMS = 8192


@dataclass
class RouteResult:
    """What a route returns: scores (larger = more suspicious), an optional tie-break, and a record."""

    scores: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)
    tiebreak: np.ndarray | None = None


@dataclass
class Inputs:
    """Everything a route may use, resolved once."""

    adapter: ClassifierAdapter
    X: Any
    y: np.ndarray
    checkpoints: list[Checkpoint] | None
    params: Sequence[str] | None
    progress: bool | None
    seed: int
    _phi: np.ndarray | None = None

    @property
    def phi(self) -> np.ndarray:
        """Final-model features of the training points (computed once)."""
        if self._phi is None:
            self._phi = self.adapter.features(self.X)
            if self._phi.shape[0] != self.y.shape[0]:
                raise InputError(f"`X` has {self._phi.shape[0]} rows but `y` has {self.y.shape[0]} labels; pass one label per row.")
        return self._phi


def _trajectory(inputs: Inputs) -> Trajectory:
    if isinstance(inputs.adapter, TreeEnsemble):
        if inputs.checkpoints is not None:
            raise InputError("A tree ensemble's trajectory is its boosting rounds; do not pass `checkpoints` with it.")
        return boosting_trajectory(inputs.adapter, inputs.X, inputs.y)
    if inputs.checkpoints is None:
        raise InputError(
            "This route reads the training trajectory: pass `checkpoints=` (a folder written by rp.CheckpointRecorder, "
            "or a list of state dicts in training order)."
        )
    if not isinstance(inputs.adapter, TorchClassifier):
        raise ModelError("Checkpoints are state dicts of a torch network: pass the nn.Module (or a TorchClassifier).")
    return network_trajectory(inputs.adapter, inputs.X, inputs.y, inputs.checkpoints, progress=inputs.progress)


def _trajectory_details(trajectory: Trajectory) -> dict[str, Any]:
    return {
        "n_checkpoints": int(trajectory.epochs.size),
        "epochs": trajectory.epochs.tolist(),
        "fitted_fraction": np.round(trajectory.fitted_fraction(), 4).tolist(),
    }


def trajectory_loss(inputs: Inputs) -> RouteResult:
    trajectory = _trajectory(inputs)
    return RouteResult(trajectory.mean_loss(), _trajectory_details(trajectory), tiebreak=-trajectory.margins[-1])


def trajectory_margin(inputs: Inputs) -> RouteResult:
    trajectory = _trajectory(inputs)
    return RouteResult(trajectory.mean_margin_score(), _trajectory_details(trajectory), tiebreak=trajectory.losses[-1])


def tracin(inputs: Inputs) -> RouteResult:
    if inputs.params is None:
        trajectory = _trajectory(inputs)
        return RouteResult(trajectory.tracin_head(), {**_trajectory_details(trajectory), "params": "head"})
    from .methods import TracInCP

    if inputs.checkpoints is None or not isinstance(inputs.adapter, TorchClassifier):
        raise InputError("TracIn over chosen layers needs a torch network and its `checkpoints`.")
    explainer = TracInCP(inputs.adapter, params=list(inputs.params)).fit(
        inputs.X, inputs.y, checkpoints=[c.state for c in inputs.checkpoints],
        learning_rates=[c.learning_rate for c in inputs.checkpoints],
    )
    return RouteResult(explainer.self_influence(), {"params": list(inputs.params), **explainer.fit_report_})


def final_loss(inputs: Inputs) -> RouteResult:
    loss, margin, _ = label_statistics(inputs.adapter.logits_from_features(inputs.phi), inputs.y)
    return RouteResult(loss, {}, tiebreak=-margin)


def cross_fit(inputs: Inputs) -> RouteResult:
    from .crossfit import choose_lam, crossfit_probabilities

    lam, why = choose_lam(fitted_fraction(inputs.adapter, inputs.phi, inputs.y))
    held_out = crossfit_probabilities(inputs.phi, inputs.y, inputs.adapter.n_outputs, folds=CROSSFIT_FOLDS, lam=lam,
                                      seed=inputs.seed)
    p_label = held_out[np.arange(len(inputs.y)), inputs.y]
    return RouteResult(1.0 - p_label, {"folds": CROSSFIT_FOLDS, "lam": lam, "lam_reason": why,
                                       "held_out_accuracy": float((held_out.argmax(1) == inputs.y).mean())})


def _fitted_self_influence(explainer: Any, inputs: Inputs) -> RouteResult:
    explainer.fit(inputs.X, inputs.y)
    return RouteResult(explainer.self_influence(), dict(getattr(explainer, "fit_report_", {})))


def influence(inputs: Inputs) -> RouteResult:
    from .methods import InfluenceFunction

    size = inputs.adapter.n_outputs * (inputs.adapter.n_features + 1)
    hessian = "exact" if size <= EXACT_INFLUENCE_PARAMS else "ekfac"
    return _fitted_self_influence(InfluenceFunction(inputs.adapter, hessian=hessian), inputs)


def rps_l2(inputs: Inputs) -> RouteResult:
    from .methods import RPSL2

    return _fitted_self_influence(RPSL2(inputs.adapter, refit="labels"), inputs)


def rps_lje(inputs: Inputs) -> RouteResult:
    from .methods import RPSLJE

    return _fitted_self_influence(RPSLJE(inputs.adapter), inputs)


def dualview(inputs: Inputs) -> RouteResult:
    from .methods import DualView

    n = len(inputs.y)
    C = DUALVIEW_CN / n
    for _ in range(4):
        explainer = DualView(inputs.adapter, C=C, seed=inputs.seed).fit(inputs.X, inputs.y)
        if explainer.fit_report_["at_bound_fraction"] <= DUALVIEW_MAX_AT_BOUND:
            break
        C *= 10
    return RouteResult(explainer.self_influence(), {"C": C, **explainer.fit_report_}, tiebreak=explainer.ranking_tiebreak())


ROUTES: dict[str, Callable[[Inputs], RouteResult]] = {
    "trajectory-loss": trajectory_loss,
    "trajectory-margin": trajectory_margin,
    "tracin": tracin,
    "cross-fit": cross_fit,
    "loss": final_loss,
    "influence": influence,
    "rps-l2": rps_l2,
    "rps-lje": rps_lje,
    "dualview": dualview,
}


@dataclass(frozen=True)
class Choice:
    """The route ``method="auto"`` picked, why, and a caveat when it is known to be weak."""

    method: str
    reason: str
    caveat: str | None = None


def fitted_fraction(adapter: ClassifierAdapter, phi: np.ndarray, y: np.ndarray) -> float:
    """Share of training points the final model predicts as their given label."""
    return float((predicted_class(adapter.logits_from_features(phi)) == y).mean())


def choose(inputs: Inputs) -> Choice:
    """The validated route for what ``inputs`` holds (see the module docstring's table)."""
    if isinstance(inputs.adapter, TreeEnsemble):
        return Choice(
            "trajectory-loss",
            f"the booster's {inputs.adapter.n_trees} trees are its training trajectory: the loss on each point's given "
            "label, averaged over log-spaced boosting rounds, sees the rounds before the trees fitted it",
        )
    fitted = fitted_fraction(inputs.adapter, inputs.phi, inputs.y)
    if inputs.checkpoints is not None and len(inputs.checkpoints) >= 2:
        recorded = f"{len(inputs.checkpoints)} checkpoints recorded and the final network predicts {100 * fitted:.1f} % of its labels as given"
        if fitted >= MEMORISED_SHARE:
            return Choice(
                "trajectory-loss",
                f"{recorded} (memorised): the loss on each point's given label, averaged over log-spaced epochs, "
                "sees the epochs before the network memorised it",
            )
        return Choice(
            "trajectory-margin",
            f"{recorded} (not memorised): the margin of each point's given label over its strongest rival class, "
            "averaged over log-spaced epochs (area under the margin), separates flips to a confusable class best",
        )
    reason = (
        "no training trajectory (no checkpoints): held-out probabilities from "
        f"{CROSSFIT_FOLDS}-fold refits of the head on the model's features"
    )
    caveat = None
    if fitted >= MEMORISED_SHARE:
        caveat = (
            f"the model predicts {100 * fitted:.1f} % of its training labels as given, so it has memorised most wrong "
            "ones and any ranking from its final weights is weak (near its per-example loss); record checkpoints "
            "during training (rp.CheckpointRecorder) and pass checkpoints= for a ranking that sees past memorisation"
        )
    return Choice("cross-fit", reason, caveat)


def resolve_inputs(model: Any, X: Any, y: Any, checkpoints: Any, learning_rates: Sequence[float] | None,
                   params: Sequence[str] | None, progress: bool | None, seed: int) -> Inputs:
    """Wrap ``model``, check ``y`` against it, and normalise ``checkpoints``."""
    from ._validation import as_labels

    adapter = as_adapter(model)
    rows = _n_rows(X)
    if rows is not None and rows != np.shape(y)[0]:
        raise InputError(f"`X` has {rows} rows but `y` has {np.shape(y)[0]} labels; pass one label per training point.")
    if isinstance(adapter, TorchClassifier) and adapter.net.training:
        raise ModelError("`model` is in training mode (dropout / batch-norm would be random); call `model.eval()` first.")
    if isinstance(adapter, TreeEnsemble) and adapter.feature_kind != "margins":
        adapter = TreeEnsemble(adapter.model, features="margins")
    labels = as_labels(y, "y", n_classes=adapter.n_classes)
    points = as_checkpoints(checkpoints, learning_rates) if checkpoints is not None else None
    if points is None and learning_rates is not None:
        raise InputError("`learning_rates` go with `checkpoints`; pass both or neither.")
    if params is not None and (isinstance(params, str) or not all(isinstance(p, str) for p in params)):
        raise InputError(f"`params` must be a list of layer names; got {params!r}.")
    return Inputs(adapter, X, labels, points, None if params is None else list(params), progress, int(seed))


def _n_rows(X: Any) -> int | None:
    """Rows of an array, tensor or dict of arrays; ``None`` when unknown (datasets, loaders)."""
    from collections.abc import Mapping

    if isinstance(X, Mapping):
        first = next(iter(X.values()), None)
        return None if first is None else int(np.shape(first)[0])
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else None


def run_route(method: str, inputs: Inputs) -> RouteResult:
    """Run ``method`` (one of :data:`ROUTES`) on ``inputs``; checks the score vector it returns."""
    if method not in ROUTES:
        raise InputError(f"`method` must be 'auto' or one of {sorted(ROUTES)}; got {method!r}.")
    result = ROUTES[method](inputs)
    if not np.all(np.isfinite(result.scores)):
        warnings.warn(f"route {method!r} produced non-finite scores; they rank last.", RuntimeWarning, stacklevel=3)
        result.scores = np.where(np.isfinite(result.scores), result.scores, -np.inf)
    return result
