"""Full-model attribution: influence, RelatIF, gradient similarity and TracIn over all parameters.

Unlike the head-only methods, these explainers differentiate the whole network (any differentiable
``nn.Module``: CNNs, MLPs, LSTMs over packed or padded dict batches) and so take raw inputs, not
features. Each is still one bilinear form scored by the shared engine,

    a(t, i) = ⟨u_t, v_i⟩ · s_i,

with the training vectors ``v_i`` stored once at ``fit`` (a :class:`~representer.engine.CoefficientKernel`
with ``x = V`` ``(n, P')`` and unit coefficients; test side ``x = u``, output 0, sign +1):

* :class:`FullModelInfluence`: ``v_i = g_i = ∇_θ ℓ(x_i, y_i)``, ``u_t = (C + λI)⁻¹ g_t`` with
  ``g_t = ∇_θ ℓ(x_t, c)`` for the explained class ``c`` — ``I(t, i) = g_tᵀ(C + λI)⁻¹g_i``,
  positive = helpful (up-weighting ``i`` lowers the loss of class ``c`` at ``t``; spec §5.1, pitfall 20).
  One inverse-curvature solve per test batch; the backends are those of
  :mod:`representer.fullmodel.ihvp` and :mod:`representer.fullmodel.ekfac`.
* :class:`FullModelRelatIF`: the same numerator with ``s_i = 1/‖(C + λI)⁻¹g_i‖`` (``kind="theta"``)
  or ``1/√(g_iᵀ(C + λI)⁻¹g_i)`` (``kind="loss"``), denominators precomputed per training point
  (floored at 1e-12 as in dattri). With ``hessian="cg"`` or ``"lissa"`` the denominators use the
  EK-FAC block-diagonal approximation by default (``denominators="auto"``), as in RelatIF's
  Appendix C; ``denominators="backend"`` runs the backend on every training gradient instead.
* :class:`FullModelSimilarity`: SIM (spec §4.5): ``v_i = ĝ_i/‖ĝ_i‖`` with ``g_i = ∇_θ z_{y_i}(x_i)``
  the gradient of the training label's *logit*, ``u_t = ∇_θ z_c(x_t)``; ``ĝ = Rᵀg`` after a seeded
  random projection when ``projection_dim`` is set (SIM-rp), normalised after projection.
* :class:`TracInCP`: ``Σ_c η_c ⟨∇ℓ_t(θ_c), ∇ℓ_i(θ_c)⟩`` over saved checkpoints ``θ_c`` with
  learning rates ``η_c`` (Pruthi et al. 2020), optionally projected; positive = proponent.

``train_features_`` of these explainers holds the network's training *logits* ``(n, K)`` (the
base class persists and fingerprints it); the parameters of the whole network are fingerprinted
too, so a saved explainer refuses a network whose weights changed anywhere.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from .._params import Boolean, NoneValue, Options, Strings, non_negative, positive
from .._validation import check_positive
from ..engine import CoefficientKernel, TestFactors
from ..errors import InputError, ModelError, StaleStateError
from ..fullmodel.curvature import Curvature, CurvatureKind
from ..fullmodel.ekfac import EKFACInverse, LayerFactors, fit_ekfac
from ..fullmodel.layers import layer_slots
from ..fullmodel.ihvp import ConjugateGradient, ExactInverse, IdentityInverse, InverseCurvature, LiSSA
from ..fullmodel.network import LabelledData, Network, ParameterSet, compute_dtype
from ..fullmodel.per_example import GradientComputer
from ..fullmodel.projection import ProjectionKind, RandomProjector
from ..models import TorchClassifier, as_adapter, predicted_class
from ..models.base import array_fingerprint
from .base import Explainer

Tensor = torch.Tensor
FullHessian = Literal["exact", "cg", "lissa", "ekfac", "identity"]
_BACKENDS = ("exact", "cg", "lissa", "ekfac", "identity")
#: Denominator floor, as in dattri's ``relatif_method``.
DENOMINATOR_FLOOR = 1e-12


def parameter_fingerprint(net: nn.Module) -> str:
    """A content hash of every parameter and buffer of ``net``."""
    return array_fingerprint(*[t.detach().cpu().to(torch.float64).numpy() for t in net.state_dict().values()])


class _FullModelExplainer(Explainer):
    """Shared plumbing: raw inputs, a private float64 copy of the network, persistence checks.

    Args (besides the engine's): ``params`` — parameter names or module prefixes to attribute over
    (default: all trainable parameters); ``compute_dtype`` — precision of gradients and solves.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "params": [NoneValue(), Strings()],
        "compute_dtype": [Options(("float32", "float64"))],
    }

    def __init__(self, model: Any, *, params: Sequence[str] | None = None, compute_dtype: str = "float64", **engine: Any) -> None:
        super().__init__(model, **engine)
        self.params = params
        self.compute_dtype = compute_dtype

    # ------------------------------------------------------------------ network access
    def _adapter(self) -> TorchClassifier:
        adapter = as_adapter(self.model)
        if not isinstance(adapter, TorchClassifier):
            raise ModelError(
                f"{type(self).__name__} differentiates the whole network, so it needs a torch nn.Module or a "
                f"TorchClassifier; got {type(adapter).__name__}. Use the head-only explainers for features or trees."
            )
        return adapter

    def network(self) -> Network:
        """The private copy of the network the explainer differentiates (built once)."""
        if getattr(self, "_network_cache", None) is None:
            net = self.model_.net
            selection = ParameterSet.select(net, self.params)
            self._network_cache = Network(net, selection, device=self.model_.device, dtype=compute_dtype(self.compute_dtype))
        return self._network_cache

    def _store_dtype(self) -> np.dtype:
        return np.dtype(np.float64 if self.dtype == "float64" else np.float32)

    def _gradients(self) -> GradientComputer:
        if getattr(self, "_gradient_cache", None) is None:
            self._gradient_cache = GradientComputer(self.network())
        return self._gradient_cache

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> "_FullModelExplainer":
        """Compute per-example training gradients of the whole network and the method's train-side state."""
        with self._fitting():
            self.model_ = self._adapter()
            self._network_cache = None
            self._gradient_cache = None
            network = self.network()
            logits = network.logits(X, self.model_.batch_size)
            self.y_ = self._labels(y, logits.shape[0])
            self.train_features_ = logits
            self._data = LabelledData(X, self.y_, self.model_.batch_size)
            self.fit_report_ = {}
            self._fit(logits, self.y_)
            self.fit_report_.update(
                {
                    "n_params": network.params.n_params,
                    "gradient_route": self._gradients().route,
                    "parameter_fingerprint": parameter_fingerprint(self.model_.net),
                }
            )
            self._finish_fit()
        return self

    @classmethod
    def _restore(cls, model: Any, config: dict, arrays: dict[str, np.ndarray]) -> "Explainer":
        explainer = super()._restore(model, config, arrays)
        if parameter_fingerprint(explainer.model_.net) != explainer.fit_report_.get("parameter_fingerprint"):
            raise StaleStateError(
                "The saved explainer was fitted on a network with different parameters; refit it, or load it with the "
                "network it was fitted on."
            )
        return explainer

    # ------------------------------------------------------------------ explaining
    def _prepare(self, X: Any, target: Any, y: Any) -> tuple[np.ndarray, TestFactors]:
        self._check_fitted()
        logits = self.network().logits(X, self.model_.batch_size)
        if isinstance(target, str) and target == "predicted":
            tgt = predicted_class(logits)
        else:
            tgt = self.resolve_target(target, logits, y)
        return tgt, self._test_factors(X, tgt)

    def _test_factors(self, X: Any, target: np.ndarray) -> TestFactors:
        """Test-side vectors ``u`` for raw inputs ``X`` (full-model explainers take inputs, not features)."""
        u = np.concatenate(list(self._test_vectors(LabelledData(X, target, self.model_.batch_size))))
        m = u.shape[0]
        return TestFactors({"x": torch.as_tensor(u)}, torch.zeros(m, dtype=torch.long), torch.ones(m, dtype=torch.float64))

    @abstractmethod
    def _test_vectors(self, data: LabelledData) -> Iterator[np.ndarray]:
        """Yield blocks of test-side vectors, one block per batch of test inputs."""

    def _kernel_from(self, vectors: np.ndarray, scale: np.ndarray | None = None) -> CoefficientKernel:
        n = vectors.shape[0]
        return CoefficientKernel(
            x=torch.as_tensor(vectors),
            coef=torch.ones(n, 1, dtype=torch.float64),
            scale=None if scale is None else torch.as_tensor(scale),
        )


class FullModelInfluence(_FullModelExplainer):
    """Influence over all parameters, ``I(t, i) = g_tᵀ(C + λI)⁻¹g_i`` (positive = helpful).

    Args:
        model: an ``nn.Module`` (eval mode) or a :class:`~representer.TorchClassifier`.
        hessian: ``"ekfac"`` (Linear/Conv2d layers; default), ``"exact"`` (``P ≲ 20k``), ``"cg"``,
            ``"lissa"`` or ``"identity"`` (gradient dot product).
        damping: ``λ``. For leave-one-out agreement set it to the L2 coefficient of the training
            objective ``mean loss + (λ/2)‖θ‖²``.
        curvature: ``"ggn"`` (Gauss–Newton = Fisher; default, positive semi-definite) or
            ``"hessian"`` (exact, CG and LiSSA only; EK-FAC always approximates the GGN).
        params: parameter names / module prefixes to attribute over (default all).
        denominators: how the per-training-point forms ``g_iᵀ(C+λI)⁻¹g_i`` and ``‖(C+λI)⁻¹g_i‖``
            (self-influence; RelatIF's denominators) are computed: ``"auto"`` (the backend itself
            for exact / EK-FAC / identity, EK-FAC for CG / LiSSA), ``"backend"`` or ``"ekfac"``.
        cg_tol, cg_max_iter: CG stopping rule (relative residual) and iteration cap.
        lissa_depth, lissa_scale, lissa_repeats, lissa_batch_size, lissa_tol: LiSSA recursion length,
            scale (``None``: 1.2 × power-iteration ``λ_max``), repeats, mini-batch (``None``: full
            set) and the residual above which a ``ConvergenceWarning`` is raised.
        ekfac_samples: ``None`` (EK-FAC's Fisher as the exact expectation over the ``K`` classes)
            or the number of labels sampled from the model per example (``K/ekfac_samples`` times
            cheaper to fit; kronfluence samples one).
        seed: seeds LiSSA's mini-batches, the power iteration and EK-FAC's label samples.
        compute_dtype: precision of gradients and solves (``"float64"`` default).

    Fitted attributes: ``gradients_`` ``(n, P)`` (float32 unless ``dtype="float64"``),
    ``train_self_influence_`` and ``inverse_gradient_norms_`` ``(n,)``, the backend's arrays, and
    ``solver_report_`` (diagnostics of the last solve).
    """

    name = "influence_full"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "hessian": [Options(_BACKENDS)],
        "damping": [non_negative(float)],
        "curvature": [Options(("ggn", "hessian"))],
        "denominators": [Options(("auto", "backend", "ekfac"))],
        "cg_tol": [positive(float)],
        "cg_max_iter": [positive(int)],
        "lissa_depth": [positive(int)],
        "lissa_scale": [NoneValue(), positive(float)],
        "lissa_repeats": [positive(int)],
        "lissa_batch_size": [NoneValue(), positive(int)],
        "lissa_tol": [positive(float)],
        "ekfac_samples": [NoneValue(), positive(int)],
        "seed": [non_negative(int)],
    }

    def __init__(
        self,
        model: Any,
        *,
        hessian: FullHessian = "ekfac",
        damping: float = 1e-3,
        curvature: CurvatureKind = "ggn",
        params: Sequence[str] | None = None,
        denominators: Literal["auto", "backend", "ekfac"] = "auto",
        cg_tol: float = 1e-10,
        cg_max_iter: int = 500,
        lissa_depth: int = 1000,
        lissa_scale: float | None = None,
        lissa_repeats: int = 1,
        lissa_batch_size: int | None = None,
        lissa_tol: float = 1e-3,
        ekfac_samples: int | None = None,
        seed: int = 0,
        compute_dtype: str = "float64",
        **engine: Any,
    ) -> None:
        super().__init__(model, params=params, compute_dtype=compute_dtype, **engine)
        self.hessian = hessian
        self.ekfac_samples = ekfac_samples
        self.damping = damping
        self.curvature = curvature
        self.denominators = denominators
        self.cg_tol = cg_tol
        self.cg_max_iter = cg_max_iter
        self.lissa_depth = lissa_depth
        self.lissa_scale = lissa_scale
        self.lissa_repeats = lissa_repeats
        self.lissa_batch_size = lissa_batch_size
        self.lissa_tol = lissa_tol
        self.seed = seed

    # ------------------------------------------------------------------ persistence layout
    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        names = ["gradients_", "train_self_influence_", "inverse_gradient_norms_"]
        if self.hessian == "exact":
            names.append("hessian_factor_")
        elif self.hessian == "ekfac":
            n_layers = len(self.fit_report_.get("ekfac_layers", []))
            names += [f"ekfac{j}_{part}_" for j in range(n_layers) for part in ("q_s", "q_a", "eigenvalues")]
        elif self.hessian in ("cg", "lissa"):
            names.append("train_inputs_")
        return tuple(names)

    def save(self, path):
        """Write the fitted explainer (CG / LiSSA keep the training inputs, which must be an array)."""
        if self.hessian in ("cg", "lissa") and getattr(self, "train_inputs_", None) is None:
            raise InputError(
                f"hessian={self.hessian!r} needs the training inputs again at explain time, and only array or tensor "
                "inputs can be saved; refit after loading, or use hessian='exact' or 'ekfac', which save their curvature."
            )
        return super().save(path)

    # ------------------------------------------------------------------ fitting
    def _check_model(self, adapter: Any) -> None:
        self._validate()

    def _validate(self) -> float:
        if self.hessian not in _BACKENDS:
            raise InputError(f"`hessian` must be one of {_BACKENDS}; got {self.hessian!r}.")
        if self.denominators not in ("auto", "backend", "ekfac"):
            raise InputError(f"`denominators` must be 'auto', 'backend' or 'ekfac'; got {self.denominators!r}.")
        if self.curvature == "hessian" and self.hessian == "ekfac":
            raise InputError("EK-FAC approximates the Gauss–Newton matrix only; use curvature='ggn' with hessian='ekfac'.")
        damping = check_positive(self.damping, "damping", allow_zero=True)
        if damping == 0 and self.hessian in ("cg", "lissa", "ekfac", "exact"):
            raise InputError("`damping` must be > 0: the curvature of a softmax network is singular (e.g. 1e-3).")
        return damping

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        damping = self._validate()
        self.gradients_ = self._gradients().matrix(self._data, dtype=self._store_dtype())
        self.train_inputs_ = _array_inputs(self._data.X) if self.hessian in ("cg", "lissa") else None
        self._inverse_cache = self._build_inverse(self._data, damping, fitting=True)
        forms_backend = self._forms_backend(damping)
        quad, norm_sq = self._forms(forms_backend)
        self.train_self_influence_ = quad
        self.inverse_gradient_norms_ = np.sqrt(np.maximum(norm_sq, 0))
        self.fit_report_.update(
            {
                "hessian": self.hessian,
                "damping": damping,
                "curvature": self.curvature,
                "denominators": "ekfac" if forms_backend is not self._inverse_cache else "backend",
            }
        )

    def _forms_backend(self, damping: float) -> InverseCurvature:
        choice = self.denominators
        if choice == "auto":
            choice = "ekfac" if self.hessian in ("cg", "lissa") else "backend"
        if choice == "backend" or self.hessian == "ekfac":
            return self._inverse_cache
        try:
            return EKFACInverse(self._fit_ekfac(self._data), damping)
        except ModelError as exc:
            raise ModelError(
                f"{exc} (The per-training-point denominators of hessian={self.hessian!r} use EK-FAC by default; "
                "pass denominators='backend' to solve with the backend for every training point instead.)"
            ) from exc

    def _forms(self, backend: InverseCurvature) -> tuple[np.ndarray, np.ndarray]:
        network = self.network()
        rows = max(1, self.model_.batch_size)
        quads, norms = [], []
        for start in range(0, self.gradients_.shape[0], rows):
            g = torch.as_tensor(self.gradients_[start : start + rows]).to(network.device, network.dtype)
            q, v = backend.forms(g)
            quads.append(q.cpu().numpy())
            norms.append(v.cpu().numpy())
        return np.concatenate(quads).astype(np.float64), np.concatenate(norms).astype(np.float64)

    def _fit_ekfac(self, data: LabelledData) -> list[LayerFactors]:
        samples = self.ekfac_samples
        if samples is not None and (int(samples) != samples or samples < 1):
            raise InputError(f"`ekfac_samples` must be None or a positive integer; got {samples!r}.")
        return fit_ekfac(self.network(), data, samples=None if samples is None else int(samples), seed=int(self.seed))

    def _build_inverse(self, data: LabelledData, damping: float, *, fitting: bool) -> InverseCurvature:
        network = self.network()
        if self.hessian == "identity":
            return IdentityInverse()
        if self.hessian == "ekfac":
            if fitting:
                layers = self._fit_ekfac(data)
                self.fit_report_["ekfac_layers"] = [layer.module_name for layer in layers]
                for j, layer in enumerate(layers):
                    for part in ("q_s", "q_a", "eigenvalues"):
                        setattr(self, f"ekfac{j}_{part}_", getattr(layer, part).cpu().numpy())
            else:
                layers = [
                    LayerFactors(*slot, *(torch.as_tensor(getattr(self, f"ekfac{j}_{part}_")).to(network.device, network.dtype) for part in ("q_s", "q_a", "eigenvalues")))
                    for j, slot in enumerate(layer_slots(network))
                ]
            return EKFACInverse(layers, damping)
        if self.hessian == "exact" and not fitting:
            return ExactInverse(torch.as_tensor(self.hessian_factor_).to(network.device, network.dtype))
        curvature = Curvature(network, data, self.curvature)
        if self.hessian == "exact":
            inverse = ExactInverse.fit(curvature, damping)
            self.hessian_factor_ = inverse.factor.cpu().numpy()
            return inverse
        if self.hessian == "cg":
            return ConjugateGradient(curvature, damping, tol=float(self.cg_tol), max_iter=int(self.cg_max_iter))
        return LiSSA(
            curvature,
            damping,
            depth=int(self.lissa_depth),
            scale=self.lissa_scale,
            repeats=int(self.lissa_repeats),
            batch_size=self.lissa_batch_size,
            tol=float(self.lissa_tol),
            seed=int(self.seed),
        )

    def inverse(self) -> InverseCurvature:
        """The fitted inverse-curvature backend (rebuilt from the saved arrays after :func:`~representer.load`)."""
        self._check_fitted()
        if getattr(self, "_inverse_cache", None) is None:
            data = None
            if self.hessian in ("cg", "lissa"):
                data = LabelledData(self.train_inputs_, self.y_, self.model_.batch_size)
            self._inverse_cache = self._build_inverse(data, float(self.damping), fitting=False)
        return self._inverse_cache

    # ------------------------------------------------------------------ scoring
    def _train_scale(self) -> np.ndarray | None:
        return None

    def _build_kernel(self) -> CoefficientKernel:
        return self._kernel_from(self.gradients_, self._train_scale())

    def _test_vectors(self, data: LabelledData) -> Iterator[np.ndarray]:
        inverse = self.inverse()
        for _, g in self._gradients().iterate(data, data.y.numpy(), "loss"):
            yield inverse.solve(g).cpu().numpy().astype(self._store_dtype())
        self.solver_report_ = dict(inverse.report)

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_


class FullModelRelatIF(FullModelInfluence):
    """Relative influence over all parameters (RelatIF §3, Appendix C).

    ``kind="theta"``: ``I(t, i)/‖(C+λI)⁻¹g_i‖``; ``kind="loss"``: ``I(t, i)/√(g_iᵀ(C+λI)⁻¹g_i)``.
    Every backend supports both kinds; see :class:`FullModelInfluence` for the arguments and
    ``denominators`` (EK-FAC block-diagonal denominators for CG / LiSSA, as in the paper).
    Fitted attributes add ``denominators_`` ``(n,)``. :meth:`self_influence` is
    ``g_iᵀ(C+λI)⁻¹g_i / denominator_i``.
    """

    name = "relatif_full"
    _parameter_constraints: ClassVar[dict[str, list]] = {"kind": [Options(("theta", "loss"))]}

    def __init__(self, model: Any, *, kind: Literal["theta", "loss"] = "theta", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.kind = kind

    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*super()._fitted_arrays, "denominators_")

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        if self.kind not in ("theta", "loss"):
            raise InputError(f"`kind` must be 'theta' (θ-RelatIF) or 'loss' (ℓ-RelatIF); got {self.kind!r}.")
        super()._fit(logits, y)
        raw = self.inverse_gradient_norms_ if self.kind == "theta" else self.train_self_influence_
        clamped = int((raw < DENOMINATOR_FLOOR).sum())
        floored = np.maximum(raw, DENOMINATOR_FLOOR)
        self.denominators_ = floored if self.kind == "theta" else np.sqrt(floored)
        if clamped:
            warnings.warn(
                f"RelatIF({self.kind!r}): {clamped} of {raw.shape[0]} training points have a denominator below "
                f"{DENOMINATOR_FLOOR:g} (zero gradient, or a negative quadratic form of an indefinite Hessian); clamped.",
                RuntimeWarning,
                stacklevel=3,
            )
        self.fit_report_.update({"kind": self.kind, "n_clamped": clamped})

    def _train_scale(self) -> np.ndarray:
        return 1.0 / self.denominators_

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_ / self.denominators_


class FullModelSimilarity(_FullModelExplainer):
    """SIM / SIM-rp over all parameters (spec §4.5): ``⟨ĝ_i/‖ĝ_i‖, ĝ_t⟩`` of logit gradients.

    Args:
        model: an ``nn.Module`` (eval mode) or a :class:`~representer.TorchClassifier`.
        projection_dim: ``None`` (SIM, exact gradients) or ``k`` (SIM-rp; DualView uses 128).
        projection: ``"gaussian"`` (``N(0, 1)/√k``, as DualView) or ``"rademacher"``.
        seed: the projection's seed.
        cosine: also normalise the test gradient (ranking per test point unchanged).
        params, compute_dtype: as in :class:`FullModelInfluence`.

    Only the training side is normalised, after projection (one-sided, as in the DualView code).
    Fitted attributes: ``vectors_`` ``(n, P or k)`` unit rows, ``gradient_norms_`` ``(n,)``
    (``‖ĝ_i‖``, the self-influence score).
    """

    name = "sim_full"
    _fitted_arrays: ClassVar[tuple[str, ...]] = ("vectors_", "gradient_norms_")
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "projection_dim": [NoneValue(), positive(int)],
        "projection": [Options(("gaussian", "rademacher"))],
        "seed": [non_negative(int)],
        "cosine": [Boolean()],
    }

    def __init__(
        self,
        model: Any,
        *,
        projection_dim: int | None = None,
        projection: ProjectionKind = "gaussian",
        seed: int = 0,
        cosine: bool = False,
        params: Sequence[str] | None = None,
        compute_dtype: str = "float64",
        **engine: Any,
    ) -> None:
        super().__init__(model, params=params, compute_dtype=compute_dtype, **engine)
        self.projection_dim = projection_dim
        self.projection = projection
        self.seed = seed
        self.cosine = cosine

    def projector(self) -> RandomProjector | None:
        if self.projection_dim is None:
            return None
        if getattr(self, "_projector_cache", None) is None:
            self._projector_cache = RandomProjector(
                self.network().params.n_params, int(self.projection_dim), kind=self.projection, seed=int(self.seed)
            )
        return self._projector_cache

    def _vectors(self, data: LabelledData, classes: np.ndarray):
        projector = self.projector()
        for _, g in self._gradients().iterate(data, classes, "logit"):
            yield g if projector is None else projector.project(g)

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        self._projector_cache = None
        blocks = [v.cpu().numpy() for v in self._vectors(self._data, y)]
        vectors = np.concatenate(blocks).astype(np.float64)
        self.gradient_norms_ = np.linalg.norm(vectors, axis=1)
        inverse = np.divide(1.0, self.gradient_norms_, out=np.zeros_like(self.gradient_norms_), where=self.gradient_norms_ > 0)
        self.vectors_ = (vectors * inverse[:, None]).astype(self._store_dtype())
        self.fit_report_.update({"projection_dim": self.projection_dim, "zero_gradients": int((self.gradient_norms_ == 0).sum())})

    def _build_kernel(self) -> CoefficientKernel:
        return self._kernel_from(self.vectors_)

    def _test_vectors(self, data: LabelledData) -> Iterator[np.ndarray]:
        for v in self._vectors(data, data.y.numpy()):
            if self.cosine:
                v = v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
            yield v.cpu().numpy().astype(self._store_dtype())

    def _self_influence(self) -> np.ndarray:
        return self.gradient_norms_


class TracInCP(_FullModelExplainer):
    """TracIn over checkpoints (Pruthi et al. 2020): ``Σ_c η_c ⟨∇ℓ_t(θ_c), ∇ℓ_i(θ_c)⟩``.

    ``fit(X, y, checkpoints=[state_dict, ...], learning_rates=[η_1, ...])`` (the network's own
    weights are used for the explained class when ``target="predicted"``). With
    ``projection_dim=k`` each checkpoint's gradients are projected by the same seeded ``R``
    (TracIn-RP); the train side then stores ``C·k`` numbers per point instead of ``C·P``.
    Loss gradients of the training label (train) and explained class (test): positive = proponent
    (a gradient step on ``i`` lowered the test loss). Self-influence: ``Σ_c η_c ‖∇ℓ_i(θ_c)‖²``.

    With ``params`` naming a subset of the layers, the gradients at checkpoint ``c`` are still taken
    through the whole network *as it was at* ``c``: the other parameters and the buffers come from
    the checkpoint too. Checkpoints that hold only the chosen parameters (a recorder with
    ``params=``) leave the rest at the network's current weights, which is exact only if those
    layers were frozen during training; ``fit_report_["other_layers"]`` says which applied.

    Fitted attributes: ``vectors_`` ``(n, C·P')`` (``√η_c``-scaled, concatenated), ``checkpoints_``
    ``(C, P)``, ``checkpoint_context_`` ``(C, P_other)`` (the other parameters and buffers of each
    checkpoint; ``(C, 0)`` when the checkpoints hold only the chosen ones), ``learning_rates_``
    ``(C,)``, ``train_self_influence_`` ``(n,)``.
    """

    name = "tracin_cp"
    _fitted_arrays: ClassVar[tuple[str, ...]] = (
        "vectors_", "checkpoints_", "checkpoint_context_", "learning_rates_", "train_self_influence_",
    )
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "projection_dim": [NoneValue(), positive(int)],
        "projection": [Options(("gaussian", "rademacher"))],
        "seed": [non_negative(int)],
    }

    def __init__(
        self,
        model: Any,
        *,
        projection_dim: int | None = None,
        projection: ProjectionKind = "gaussian",
        seed: int = 0,
        params: Sequence[str] | None = None,
        compute_dtype: str = "float64",
        **engine: Any,
    ) -> None:
        super().__init__(model, params=params, compute_dtype=compute_dtype, **engine)
        self.projection_dim = projection_dim
        self.projection = projection
        self.seed = seed

    def fit(self, X: Any, y: Any, *, checkpoints: Sequence[Mapping[str, Tensor]] = (), learning_rates: Sequence[float] = ()) -> "TracInCP":
        """Fit on training data with the saved ``checkpoints`` (state dicts) and their ``learning_rates``."""
        if len(checkpoints) == 0 or len(checkpoints) != len(learning_rates):
            raise InputError(
                f"Pass `checkpoints` (a non-empty list of state dicts) and one learning rate per checkpoint; got "
                f"{len(checkpoints)} checkpoints and {len(learning_rates)} learning rates."
            )
        self._pending = (list(checkpoints), [check_positive(lr, "learning_rates") for lr in learning_rates])
        return super().fit(X, y)  # type: ignore[return-value]

    def _checkpoint_vector(self, state: Mapping[str, Tensor], names: Sequence[str]) -> np.ndarray:
        """The entries ``names`` of ``state``, flattened in float64 (shapes checked against the network)."""
        own = self.model_.net.state_dict()
        missing = [n for n in names if n not in state]
        if missing:
            raise InputError(f"A checkpoint lacks parameters {missing[:3]}; pass full `state_dict()`s of the network.")
        for n in names:
            if tuple(torch.as_tensor(state[n]).shape) != tuple(own[n].shape):
                raise InputError(
                    f"A checkpoint does not fit the network: `{n}` has shape {tuple(torch.as_tensor(state[n]).shape)} there "
                    f"and {tuple(own[n].shape)} in the network (another architecture)."
                )
        parts = [torch.as_tensor(state[n]).detach().reshape(-1).to(torch.float64).cpu() for n in names]
        return torch.cat(parts).numpy() if parts else np.zeros(0)

    def _context_names(self) -> list[str]:
        """Parameters outside ``params`` and the buffers: the rest of the network at a checkpoint."""
        network = self.network()
        return [*network.frozen, *network.buffers]

    def _load_context(self, flat: np.ndarray) -> None:
        """Set the network's other parameters and buffers from a ``checkpoint_context_`` row."""
        network = self.network()
        own = self.model_.net.state_dict()
        offset = 0
        for name in self._context_names():
            size = own[name].numel()
            value = torch.as_tensor(flat[offset : offset + size]).reshape(own[name].shape)
            offset += size
            target = network.frozen if name in network.frozen else network.buffers
            dtype = network.dtype if own[name].is_floating_point() else own[name].dtype
            target[name] = value.to(network.device, dtype)

    def projector(self) -> RandomProjector | None:
        if self.projection_dim is None:
            return None
        if getattr(self, "_projector_cache", None) is None:
            self._projector_cache = RandomProjector(
                self.network().params.n_params, int(self.projection_dim), kind=self.projection, seed=int(self.seed)
            )
        return self._projector_cache

    def _vectors(self, data: LabelledData, classes: np.ndarray) -> np.ndarray:
        network = self.network()
        original = network.flat_parameters()
        original_context = (dict(network.frozen), dict(network.buffers))
        projector = self.projector()
        parts = []
        try:
            for theta, context, lr in zip(self.checkpoints_, self.checkpoint_context_, self.learning_rates_):
                network.load_flat(torch.as_tensor(theta))
                if context.size:
                    self._load_context(context)
                blocks = []
                for _, g in self._gradients().iterate(data, classes, "loss"):
                    g = g if projector is None else projector.project(g)
                    blocks.append((g * float(lr) ** 0.5).cpu().numpy())
                parts.append(np.concatenate(blocks))
        finally:
            network.load_flat(original)
            network.frozen, network.buffers = original_context
        return np.concatenate(parts, axis=1)

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        checkpoints, learning_rates = self._pending
        self._projector_cache = None
        chosen, context = self.network().params.names, self._context_names()
        self.checkpoints_ = np.stack([self._checkpoint_vector(s, chosen) for s in checkpoints]).astype(self._store_dtype())
        holds_context = [all(n in s for n in context) for s in checkpoints]
        if any(holds_context) and not all(holds_context):
            raise InputError(
                "Some checkpoints hold the whole network and others only some parameters; pass checkpoints of one kind."
            )
        self.checkpoint_context_ = (
            np.stack([self._checkpoint_vector(s, context) for s in checkpoints])
            if all(holds_context) else np.zeros((len(checkpoints), 0))
        )
        self.learning_rates_ = np.asarray(learning_rates, dtype=np.float64)
        vectors = self._vectors(self._data, y)
        self.train_self_influence_ = (vectors.astype(np.float64) ** 2).sum(axis=1)
        self.vectors_ = vectors.astype(self._store_dtype())
        self.fit_report_.update({
            "n_checkpoints": len(checkpoints), "projection_dim": self.projection_dim,
            "other_layers": "from each checkpoint" if self.checkpoint_context_.shape[1] or not context
            else "the network's current weights (checkpoints hold only the chosen parameters)",
        })

    def _build_kernel(self) -> CoefficientKernel:
        return self._kernel_from(self.vectors_)

    def _test_vectors(self, data: LabelledData) -> Iterator[np.ndarray]:
        yield self._vectors(data, data.y.numpy()).astype(self._store_dtype())

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_


def _array_inputs(X: Any) -> np.ndarray | None:
    """``X`` as a numpy array when it is an array or tensor (saved for CG / LiSSA), else ``None``."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    if isinstance(X, np.ndarray):
        return X
    return None
