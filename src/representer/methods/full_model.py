"""Full-model attribution: influence, RelatIF, gradient similarity and TracIn over all parameters.

Unlike the head-only methods, these explainers differentiate the whole network (any differentiable
``nn.Module``: CNNs, MLPs, LSTMs over packed or padded dict batches) and so take raw inputs, not
features. Each is still one bilinear form scored by the shared engine,

    a(t, i) = ⟨u_t, v_i⟩ · s_i,

with the training vectors ``v_i`` computed once at ``fit``, in blocks, and stored in float32 (the
engine's ``dtype``) in *factored* form (:mod:`representer.fullmodel.factored`): a Linear layer seen
once per example keeps the two factors of its rank-one gradient ``δ_i ã_iᵀ``, other layers their dense
rows, and with ``projection_dim=k`` every gradient is projected to ``k`` numbers on the fly. Gradients
and solves run in ``compute_dtype`` (float64 by default); no ``n × P`` array is ever formed.

* :class:`FullModelInfluence`: ``v_i = g_i = ∇_θ ℓ(x_i, y_i)``, ``u_t = (C + λI)⁻¹ g_t`` with
  ``g_t = ∇_θ ℓ(x_t, c)`` for the explained class ``c`` — ``I(t, i) = g_tᵀ(C + λI)⁻¹g_i``,
  positive = helpful (up-weighting ``i`` lowers the loss of class ``c`` at ``t``; spec §5.1, pitfall 20).
  One inverse-curvature solve per test batch; the backends are those of
  :mod:`representer.fullmodel.ihvp` and :mod:`representer.fullmodel.ekfac`.
* :class:`FullModelRelatIF`: the same numerator with ``s_i = 1/‖(C + λI)⁻¹g_i‖`` (``kind="theta"``)
  or ``1/√(g_iᵀ(C + λI)⁻¹g_i)`` (``kind="loss"``), denominators computed per training point during the
  gradient pass (floored at 1e-12 as in dattri). With ``hessian="cg"`` or ``"lissa"`` the denominators
  use the EK-FAC block-diagonal approximation by default (``denominators="auto"``), as in RelatIF's
  Appendix C; ``denominators="backend"`` runs the backend on every training gradient instead.
* :class:`FullModelSimilarity`: SIM (spec §4.5): ``v_i = ĝ_i/‖ĝ_i‖`` with ``g_i = ∇_θ z_{y_i}(x_i)``
  the gradient of the training label's *logit*, ``u_t = ∇_θ z_c(x_t)``; ``ĝ = Rᵀg`` after a seeded
  random projection when ``projection_dim`` is set (SIM-rp), normalised after projection.
* :class:`TracInCP`: ``Σ_c η_c ⟨∇ℓ_t(θ_c), ∇ℓ_i(θ_c)⟩`` over saved checkpoints ``θ_c`` with
  learning rates ``η_c`` (Pruthi et al. 2020), optionally projected; positive = proponent. For
  Linear layers the unprojected score is ``Σ_c η_c (δ_t·δ_i)(ã_t·ã_i)`` — captum's ``TracInCPFast``
  trick, here for every Linear layer selected, not only the last.

What is differentiated: ``ℓ`` above is the ``loss=`` (training side; default the cross-entropy, the
logit for SIM) and the test side is the ``measurement=`` (default the same as the loss), both taken
in their loss form (:mod:`representer.fullmodel.measurement`), so that positive = helpful for a
margin too. EK-FAC and the Gauss–Newton matrix are the cross-entropy's and refuse another loss.

Defaults (recorded with their reasons in ``fit_report_``): ``damping="auto"`` is the largest
eigenvalue of the curvature the backend inverts (:data:`DAMPING_SCALE` × ``λ_max``), where EK-FAC
agrees with exact influence (Spearman ≥ 0.9 on small nets, ``tests/test_full_model_methods.py``);
``projection_dim="auto"`` stores exact gradients unless they would take more than
:data:`AUTO_STORE_BYTES`, and then projects them to :data:`AUTO_PROJECTION_DIM` dimensions.

``train_features_`` of these explainers holds the network's training *logits* ``(n, K)`` (the
base class persists and fingerprints it); the parameters of the whole network are fingerprinted
too, so a saved explainer refuses a network whose weights changed anywhere.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .._params import Boolean, InstanceOf, NoneValue, Options, Strings, non_negative, positive
from .._validation import check_positive
from ..engine import (
    BilinearKernel,
    CoefficientKernel,
    GradientKernel,
    KroneckerKernel,
    LowRankGradientKernel,
    SumKernel,
    TestFactors,
)
from ..errors import FileFormatError, InputError, ModelError, StaleStateError
from ..fullmodel.curvature import Curvature, CurvatureKind, power_iteration
from ..fullmodel.ekfac import LOW_RANK_TOL, EKFACInverse, LayerFactors, fit_ekfac, largest_eigenvalue
from ..fullmodel.factored import GradientBlock, GradientStore, Part, join_flat, part_prefixes, solved_tensors
from ..fullmodel.ihvp import ConjugateGradient, ExactInverse, IdentityInverse, InverseCurvature, LiSSA
from ..fullmodel.layers import layer_slots
from ..fullmodel.measurement import ClassLogit, CrossEntropy, Measurement, built_in, is_built_in, loss_form
from ..fullmodel.network import LabelledData, Network, ParameterSet, compute_dtype
from ..fullmodel.per_example import GradientComputer
from ..fullmodel.projection import ProjectionKind, RandomProjector
from ..models import TorchClassifier, as_adapter, predicted_class
from .._files import array_fingerprint
from .base import Explainer

Tensor = torch.Tensor
FullHessian = Literal["exact", "cg", "lissa", "ekfac", "identity"]
_BACKENDS = ("exact", "cg", "lissa", "ekfac", "identity")
#: Denominator floor, as in dattri's ``relatif_method``.
DENOMINATOR_FLOOR = 1e-12
#: ``damping="auto"``: this multiple of the largest eigenvalue of the curvature the backend inverts
#: (EK-FAC: its largest corrected eigenvalue; exact / CG / LiSSA: power iteration on ``C``). On the
#: small nets of the tests EK-FAC then agrees with exact influence at Spearman 0.90–0.97, against
#: 0.35 at the former fixed 1e-3 and 0.35 at kronfluence's 0.1 × mean eigenvalue.
DAMPING_SCALE = 1.0
#: ``projection_dim="auto"`` stores exact (factored) training gradients up to this many bytes ...
AUTO_STORE_BYTES = 2 * 2**30
#: ... and projects them to this many dimensions (per checkpoint) beyond.
AUTO_PROJECTION_DIM = 4096
#: The hyper-parameters that hold a :class:`~representer.fullmodel.measurement.Measurement` (saved by name).
MEASUREMENT_PARAMS = ("loss", "measurement")
_MEASUREMENT = [InstanceOf(Measurement, "a Measurement (CrossEntropy(), ClassLogit(), Margin() or your own)")]


def parameter_fingerprint(net: nn.Module) -> str:
    """A content hash of every parameter and buffer of ``net``."""
    return array_fingerprint(*[t.detach().cpu().to(torch.float64).numpy() for t in net.state_dict().values()])


class _TestRows:
    """``(m, ...)`` test-side tensors filled batch by batch (allocated once, in the engine's dtype)."""

    def __init__(self, m: int, dtype: torch.dtype) -> None:
        self.m, self.dtype = m, dtype
        self.tensors: dict[str, Tensor] = {}

    def put(self, start: int, tensors: Mapping[str, Tensor]) -> None:
        for name, value in tensors.items():
            if name not in self.tensors:
                self.tensors[name] = torch.empty((self.m, *value.shape[1:]), dtype=self.dtype)
            self.tensors[name][start : start + value.shape[0]] = value.detach().cpu()

    def factors(self) -> TestFactors:
        return TestFactors(self.tensors, torch.zeros(self.m, dtype=torch.long), torch.ones(self.m, dtype=torch.float64))


class _FullModelExplainer(Explainer):
    """Shared plumbing: raw inputs, a private copy of the network, the factored gradient store, persistence.

    Args (besides the engine's): ``loss`` / ``measurement`` — the training-side and test-side
    measurements differentiated (:mod:`representer.fullmodel.measurement`; saved by name, custom ones
    refused at save); ``params`` — parameter names or module prefixes to attribute over
    (default: all trainable parameters); ``compute_dtype`` — precision of gradients and solves;
    ``projection_dim`` / ``projection`` / ``seed`` — random projection of the stored gradients
    (``"auto"``: only when the exact store would exceed :data:`AUTO_STORE_BYTES`). The base class's
    ``progress`` shows bars on the gradient passes and scoring.
    """

    _copies: ClassVar[int] = 1
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "loss": _MEASUREMENT,
        "measurement": _MEASUREMENT,
        "params": [NoneValue(), Strings()],
        "compute_dtype": [Options(("float32", "float64"))],
        "projection_dim": [NoneValue(), Options(("auto",)), positive(int)],
        "projection": [Options(("gaussian", "rademacher"))],
        "seed": [non_negative(int)],
    }

    def __init__(
        self,
        model: Any,
        *,
        loss: Measurement = CrossEntropy(),
        measurement: Measurement = CrossEntropy(),
        params: Sequence[str] | None = None,
        compute_dtype: str = "float64",
        projection_dim: int | Literal["auto"] | None = "auto",
        projection: ProjectionKind = "gaussian",
        seed: int = 0,
        **engine: Any,
    ) -> None:
        super().__init__(model, **engine)
        self.loss = loss
        self.measurement = measurement
        self.params = params
        self.compute_dtype = compute_dtype
        self.projection_dim = projection_dim
        self.projection = projection
        self.seed = seed

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

    # ------------------------------------------------------------------ the stored gradients
    def _resolve_projection(self, parts: tuple[Part, ...], n: int) -> None:
        """Fix the projection from the first block's layout (``projection_dim="auto"``: by the store's size)."""
        exact_bytes = n * self._copies * sum(p.width for p in parts) * self._store_dtype().itemsize
        dim = self.projection_dim
        if dim == "auto":
            if exact_bytes <= AUTO_STORE_BYTES:
                dim, reason = None, f"auto: the exact gradients take {exact_bytes / 2**20:.0f} MiB ≤ {AUTO_STORE_BYTES / 2**30:.0f} GiB"
            else:
                dim = AUTO_PROJECTION_DIM
                reason = (
                    f"auto: the exact gradients would take {exact_bytes / 2**30:.1f} GiB > {AUTO_STORE_BYTES / 2**30:.0f} GiB, "
                    f"so they are projected to {AUTO_PROJECTION_DIM} dimensions"
                )
        else:
            reason = "given"
        self.fit_report_.update({"projection_dim": None if dim is None else int(dim), "projection_reason": reason})

    def projector(self) -> RandomProjector | None:
        """The seeded random projection of the stored gradients (``None`` when they are exact)."""
        dim = self.fit_report_.get("projection_dim") if hasattr(self, "fit_report_") else None
        if dim is None:
            return None
        if getattr(self, "_projector_cache", None) is None:
            self._projector_cache = RandomProjector(self.network().params.n_params, int(dim), kind=self.projection, seed=int(self.seed))
        return self._projector_cache

    def _project(self, block: GradientBlock) -> GradientBlock:
        """``block`` as stored: itself, or its random projection (made dense in bounded row chunks)."""
        projector = self.projector()
        if projector is None:
            return block
        ref = block.tensors[0][0]
        return GradientBlock.from_rows(projector.project_columns(block.flat_columns, block.b, ref.dtype, ref.device), "projected")

    def _store_block(self, start: int, block: GradientBlock, copy: int = 0) -> GradientBlock:
        """Project (if so chosen) and store one block of training gradients; returns what was stored."""
        if getattr(self, "_store_cache", None) is None:
            self._resolve_projection(block.parts, self.y_.shape[0])
            stored = self._project(block)
            self._store_cache = GradientStore.empty(stored.parts * self._copies, self.y_.shape[0], self._store_dtype())
            self.fit_report_["gradient_parts"] = [p.describe() for p in self._store_cache.parts]
            self.fit_report_["store_bytes"] = self._store_cache.nbytes
            self.fit_report_["store_dtype"] = (
                f"{self._store_dtype().name} (the engine's dtype; gradients and solves in {self.compute_dtype}, "
                "float32 storage agrees with float64 to 1e-5 relative)"
            )
        else:
            stored = self._project(block)
        self._store_cache.put(start, stored, first_part=copy * len(stored.parts))
        return stored

    def store(self) -> GradientStore:
        """The stored training gradients (rebuilt from the saved arrays after :func:`~representer.load`)."""
        if getattr(self, "_store_cache", None) is None:
            described = self.fit_report_["gradient_parts"]
            slots = {s.module_name: s for s in layer_slots(self.network())} if any(d["module"] for d in described) else {}
            parts = tuple(
                Part(d["kind"], int(d["width"]), slots[d["module"]] if d["module"] is not None else None)
                for d in described
            )
            self._store_cache = GradientStore.from_named(parts, self)
        return self._store_cache

    def _store_arrays(self) -> tuple[str, ...]:
        parts = self.fit_report_.get("gradient_parts", []) if hasattr(self, "fit_report_") else []
        return tuple(f"grad{j}_{f}_" for j, d in enumerate(parts) for f in range(2 if d["kind"] == "outer" else 1))

    def _finish_store(self) -> None:
        for name, array in self._store_cache.named_arrays().items():
            setattr(self, name, array)

    def _kernel(self, *, solved: bool, scale: np.ndarray | None = None, low_rank: frozenset[int] = frozenset()) -> BilinearKernel:
        """The engine kernel over the store: a dense (solved) test side for rank-one parts when ``solved``,
        a low-rank one for the parts in ``low_rank``, the factors of the test gradient otherwise."""
        kernels: list[BilinearKernel] = []
        store = self.store()
        for j, (part, arrays) in enumerate(zip(store.parts, store.arrays)):
            if part.kind == "outer":
                r, x = (torch.as_tensor(a) for a in arrays)
                if j in low_rank:
                    kernels.append(LowRankGradientKernel(x=x, r=r))
                else:
                    kernels.append(GradientKernel(x=x, r=r) if solved else KroneckerKernel(x=x, r=r))
            else:
                x = torch.as_tensor(arrays[0])
                kernels.append(CoefficientKernel(x=x, coef=torch.ones(x.shape[0], 1, dtype=x.dtype)))
        s = None if scale is None else torch.as_tensor(scale)
        if len(kernels) == 1:
            kernels[0].scale = s
            return kernels[0]
        return SumKernel(parts=kernels, scale=s)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> "_FullModelExplainer":
        """Compute per-example training gradients of the whole network and the method's train-side state.

        Parameters
        ----------
        X : array, tensor, dict of arrays, Dataset or DataLoader of n training inputs
            What the network takes (rows first).
        y : array-like of shape (n,)
            Training labels: class ids in ``[0, K)``, or class names with ``class_names``.

        Returns
        -------
        _FullModelExplainer
            ``self``, fitted.

        Raises
        ------
        InputError
            A hyper-parameter outside its constraints or a combination the method refuses (checked
            first), bad ``X`` or ``y``. The explainer is then left as it was.
        ModelError
            A network in training mode, not a torch network, or layers the backend cannot model.
        """
        with self._fitting():
            self.model_ = self._adapter()
            self._network_cache = None
            self._gradient_cache = None
            self._store_cache = None
            self._projector_cache = None
            network = self.network()
            self.y_ = self._labels(y, _row_count(X))
            self._data = LabelledData(X, self.y_, self.model_.batch_size)
            self._train_logits: np.ndarray | None = None
            self.fit_report_ = {}
            self._fit(None, self.y_)
            logits = self._train_logits
            self.train_features_ = logits if logits is not None else network.logits(X, self.model_.batch_size)
            self._finish_store()
            self.fit_report_.update(
                {
                    "loss": self.loss.name,
                    "measurement": self.measurement.name,
                    "n_params": network.params.n_params,
                    "gradient_route": self._gradients().route,
                    "parameter_fingerprint": parameter_fingerprint(self.model_.net),
                }
            )
            self._finish_fit()
        return self

    def save(self, path: str | Path) -> Path:
        """Write the fitted explainer to a folder (:meth:`Explainer.save`); the built-in measurements by name.

        Parameters
        ----------
        path : str or Path
            As for :meth:`Explainer.save`.

        Returns
        -------
        Path
            The folder written.

        Raises
        ------
        NotFittedError, OutputError
            As for :meth:`Explainer.save`.
        InputError
            ``loss`` or ``measurement`` is a measurement of your own (a save holds no code to rebuild it),
            CG / LiSSA influence was fitted on inputs that are not an array or tensor (it needs them again),
            or ``path`` is a file, a link or a folder of other files.
        """
        self._check_fitted()
        self._check_savable()
        return super().save(path)

    def _check_savable(self) -> None:
        """Refuse to save what a load could not rebuild: a measurement of your own."""
        custom = [f"{k}={getattr(self, k)!r}" for k in MEASUREMENT_PARAMS if not is_built_in(getattr(self, k))]
        if custom:
            raise InputError(
                f"{type(self).__name__} uses a measurement of your own ({', '.join(custom)}), which a save cannot rebuild "
                "(it holds no code); save only explainers with the built-in CrossEntropy(), ClassLogit() or Margin(), or "
                "keep the explainer in memory."
            )

    @classmethod
    def _restore(cls, model: Any, config: dict, arrays: dict[str, np.ndarray]) -> "Explainer":
        params = dict(config["params"])
        for key in MEASUREMENT_PARAMS:
            if key in params:
                try:
                    params[key] = built_in(params[key])
                except (KeyError, TypeError) as exc:
                    raise FileFormatError(
                        f"The saved `{key}` {params[key]!r} is not a built-in measurement of this representer; fit again."
                    ) from exc
        explainer = super()._restore(model, {**config, "params": params}, arrays)
        if parameter_fingerprint(explainer.model_.net) != explainer.fit_report_.get("parameter_fingerprint"):
            raise StaleStateError(
                "The saved explainer was fitted on a network with different parameters; refit it, or load it with the "
                "network it was fitted on."
            )
        return explainer

    def _train_blocks(self, classes: np.ndarray, desc: str, *, record_logits: bool = True):
        """``(start, block)`` of training gradients of ``loss`` in ``compute_dtype`` (a progress bar when asked).

        With ``record_logits`` (a pass at the network's own parameters) the blocks' logits become
        ``train_features_``, sparing a separate forward pass over the training set.
        """
        for start, block in self._gradients().iterate(self._data, classes, loss_form(self.loss), progress=self.progress, desc=desc):
            if record_logits:
                if self._train_logits is None:
                    self._train_logits = np.empty((self._data.n, block.logits.shape[1]))
                self._train_logits[start : start + block.b] = block.logits.cpu().numpy()
            yield start, block

    # ------------------------------------------------------------------ explaining
    def _prepare(self, X: Any, target: Any, y: Any) -> tuple[np.ndarray, TestFactors]:
        self._check_fitted()
        logits = self.network().logits(X, self.model_.batch_size)
        if isinstance(target, str) and target == "predicted":
            tgt = predicted_class(logits)
        else:
            tgt = self.resolve_target(target, logits, y)
        rows = _TestRows(len(tgt), self.options.dtype)
        self._test_factors(LabelledData(X, tgt, self.model_.batch_size), rows)
        return tgt, rows.factors()

    @abstractmethod
    def _test_factors(self, data: LabelledData, rows: _TestRows) -> None:
        """Fill ``rows`` with the test-side tensors of the kernel for the inputs and classes of ``data``."""

    def _test_blocks(self, data: LabelledData, desc: str = "test gradients"):
        """``(start, block)`` of gradients of ``measurement`` for the inputs and explained classes of ``data``."""
        return self._gradients().iterate(data, data.y.numpy(), loss_form(self.measurement), progress=self.progress, desc=desc)

    def _dot_tensors(self, block: GradientBlock, copy: int = 0, *, normalise: bool = False) -> dict[str, Tensor]:
        """Test-side tensors of a gradient dot product with the store (factors, or the projection), unit rows if ``normalise``."""
        stored = self._project(block)
        if normalise:
            norms = stored.sq_norms().sqrt()
            stored = stored.scaled(1 / norms.clamp_min(torch.finfo(norms.dtype).tiny))
        prefixes = part_prefixes(len(self.store().parts))
        return stored.test_tensors(prefixes[copy * len(stored.parts) : (copy + 1) * len(stored.parts)])


class FullModelInfluence(_FullModelExplainer):
    """Influence over all parameters, ``I(t, i) = g_tᵀ(C + λI)⁻¹g_i`` (positive = helpful).

    ``g_i = ∇_θ ℓ(z_i, y_i)`` is the gradient of the training ``loss`` at training point ``i`` and
    ``g_t = ∇_θ m(z_t, c)`` that of the ``measurement`` at test point ``t`` for the explained class
    ``c`` (both in their loss form, :mod:`representer.fullmodel.measurement`); ``C`` is the curvature
    of the mean training loss. Up-weighting ``i`` by ``ε`` changes ``m`` at ``t`` by ``−ε I(t, i)/n``
    (loss form), so positive = helpful: it lowers the test loss, or raises a margin.

    Parameters
    ----------
    model : nn.Module or TorchClassifier
        The network, in eval mode (an ``nn.Module`` is wrapped in :class:`~representer.TorchClassifier`).
    hessian : {"ekfac", "exact", "cg", "lissa", "identity"}, default "ekfac"
        The inverse-curvature backend: EK-FAC (Linear / Conv2d layers), the dense matrix
        (``P ≲ 20k``), conjugate gradients, LiSSA, or the identity (the gradient dot product).
    damping : float or "auto", default "auto"
        ``λ``; ``"auto"`` is :data:`DAMPING_SCALE` × the largest eigenvalue of the curvature the
        backend inverts, the scale at which EK-FAC agrees with exact influence (module docstring;
        ``fit_report_["damping"]`` is the value used). For leave-one-out agreement of a convex
        model set it to the L2 coefficient of the training objective ``mean loss + (λ/2)‖θ‖²``.
    curvature : {"ggn", "hessian"}, default "ggn"
        ``C``: the Gauss–Newton matrix (= the Fisher for cross-entropy; positive semi-definite) or
        the Hessian (exact, CG and LiSSA only; EK-FAC always approximates the GGN).
    params : list of str, optional
        Parameter names or module prefixes to attribute over (default: all trainable parameters).
    denominators : {"auto", "backend", "ekfac"}, default "auto"
        How the per-training-point forms ``g_iᵀ(C + λI)⁻¹g_i`` (self-influence) and
        ``‖(C + λI)⁻¹g_i‖`` (RelatIF's denominators) are computed: ``"auto"`` is the backend itself
        for exact / EK-FAC / identity and EK-FAC for CG / LiSSA.
    cg_tol : float, default 1e-10
        CG stops a column at this relative residual.
    cg_max_iter : int, default 500
        CG iterations at most (a ``ConvergenceWarning`` when reached).
    lissa_depth : int, default 1000
        LiSSA recursion length.
    lissa_scale : float, optional
        LiSSA's scale (``None``: 1.2 × the power-iteration ``λ_max``).
    lissa_repeats : int, default 1
        LiSSA estimates averaged.
    lissa_batch_size : int, optional
        LiSSA's mini-batch (``None``: the full training set).
    lissa_tol : float, default 1e-3
        The final relative residual above which LiSSA raises a ``ConvergenceWarning``.
    ekfac_samples : int, optional
        ``None``: EK-FAC's Fisher as the exact expectation over the ``K`` classes; ``s``: ``s``
        labels sampled from the model per example (``K/s`` times fewer backward passes; kronfluence
        samples one).
    loss : Measurement, default CrossEntropy()
        The training objective: its gradients are stored and its curvature is inverted. EK-FAC,
        ``curvature="ggn"`` and EK-FAC denominators need the cross-entropy; another loss needs
        ``curvature="hessian"`` (or ``hessian="identity"``).
    measurement : Measurement, default CrossEntropy()
        The function of the explained point whose gradient is explained (Koh & Liang's test loss;
        ``Margin()`` for the margin).
    projection_dim : int, "auto" or None, default "auto"
        ``k``: training gradients are stored as ``Rᵀg_i`` and test vectors as ``Rᵀ(C + λI)⁻¹g_t``
        (Johnson–Lindenstrauss; self-influence and RelatIF's denominators stay exact); ``None``:
        always exact; ``"auto"``: exact unless that exceeds :data:`AUTO_STORE_BYTES`.
    projection : {"gaussian", "rademacher"}, default "gaussian"
        The entries of ``R``: ``N(0, 1)/√k`` or ``±1/√k``.
    seed : int, default 0
        Seeds the projection, LiSSA's mini-batches, the power iteration and EK-FAC's label samples.
    compute_dtype : {"float64", "float32"}, default "float64"
        Precision of gradients and solves; the stored gradients take the engine's ``dtype``
        (float32 by default, within 1e-5 relative of float64).
    **engine
        ``block_size``, ``test_batch_size``, ``device``, ``dtype``, ``class_names``, ``progress`` (see
        :class:`Explainer`; ``progress`` also covers the gradient and EK-FAC passes).

    Attributes
    ----------
    grad{j}_{f}_ : ndarray of shape (n, w_j)
        The stored training gradients, part ``j``, factor ``f`` (:mod:`representer.fullmodel.factored`).
    train_self_influence_ : ndarray of shape (n,)
        ``g_iᵀ(C + λI)⁻¹g_i``.
    inverse_gradient_norms_ : ndarray of shape (n,)
        ``‖(C + λI)⁻¹g_i‖``.
    train_features_ : ndarray of shape (n, K)
        The training logits.
    solver_report_ : dict
        Diagnostics of the last solve (CG / LiSSA residuals and iterations).
    fit_report_ : dict
        The damping and its rule, the projection and its reason, ``store_bytes``, the gradient
        route, ``loss`` and ``measurement``, EK-FAC's layers and scoring ranks.

    Notes
    -----
    Memory: the stored gradients, ``n · w`` floats with ``w = Σ_Linear (out + in + 1) + Σ_other P_l``
    (``fit_report_["store_bytes"]``), plus one batch; the test side of ``explain`` holds at most
    ``m · P`` floats (``m · r · (out + in + 1)`` for a layer EK-FAC scores through the rank-``r`` SVD of
    ``1/(E + λ)``, ``fit_report_["ekfac_scoring"]``).
    """

    name = "influence_full"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "hessian": [Options(_BACKENDS)],
        "damping": [Options(("auto",)), non_negative(float)],
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
        damping: float | Literal["auto"] = "auto",
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
        loss: Measurement = CrossEntropy(),
        measurement: Measurement = CrossEntropy(),
        projection_dim: int | Literal["auto"] | None = "auto",
        projection: ProjectionKind = "gaussian",
        seed: int = 0,
        compute_dtype: str = "float64",
        **engine: Any,
    ) -> None:
        super().__init__(
            model, loss=loss, measurement=measurement, params=params, compute_dtype=compute_dtype,
            projection_dim=projection_dim, projection=projection, seed=seed, **engine,
        )
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

    # ------------------------------------------------------------------ persistence layout
    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        names = [*self._store_arrays(), "train_self_influence_", "inverse_gradient_norms_"]
        if self.hessian == "exact":
            names.append("hessian_factor_")
        elif self.hessian == "ekfac":
            n_layers = len(self.fit_report_.get("ekfac_layers", []))
            names += [f"ekfac{j}_{part}_" for j in range(n_layers) for part in ("q_s", "q_a", "eigenvalues")]
        elif self.hessian in ("cg", "lissa"):
            names.append("train_inputs_")
        return tuple(names)

    def _check_savable(self) -> None:
        """CG / LiSSA keep the training inputs for explain time, which must be an array to be saved."""
        super()._check_savable()
        if self.hessian in ("cg", "lissa") and getattr(self, "train_inputs_", None) is None:
            raise InputError(
                f"hessian={self.hessian!r} needs the training inputs again at explain time, and only array or tensor "
                "inputs can be saved; refit after loading, or use hessian='exact' or 'ekfac', which save their curvature."
            )

    # ------------------------------------------------------------------ fitting
    def _check_model(self, adapter: Any) -> None:
        self._check_options()

    def _check_options(self) -> None:
        """The checks across parameters (each one alone is checked by ``_parameter_constraints``)."""
        if self.curvature == "hessian" and self.hessian == "ekfac":
            raise InputError("EK-FAC approximates the Gauss–Newton matrix only; use curvature='ggn' with hessian='ekfac'.")
        if self.damping == 0 and self.hessian in ("cg", "lissa", "ekfac", "exact"):
            raise InputError("`damping` must be > 0: the curvature of a softmax network is singular (e.g. damping='auto').")
        if type(self.loss) is not CrossEntropy:
            self._check_curvature_of_loss()

    def _check_curvature_of_loss(self) -> None:
        """Refuse a loss other than cross-entropy where the curvature would be the cross-entropy's (EK-FAC, GGN)."""
        other = f"loss={self.loss!r} is not the cross-entropy"
        if self.hessian == "ekfac":
            raise InputError(
                f"{other}, and EK-FAC approximates the cross-entropy's Gauss–Newton matrix; use hessian='exact', 'cg' or "
                "'lissa' with curvature='hessian' (the Hessian of your loss), or hessian='identity'."
            )
        if self.hessian == "identity":
            return
        if self.curvature == "ggn":
            raise InputError(
                f"{other}, and curvature='ggn' is the cross-entropy's Gauss–Newton matrix; pass curvature='hessian' "
                "(the Hessian of your loss)."
            )
        if self.denominators == "ekfac" or (self.denominators == "auto" and self.hessian in ("cg", "lissa")):
            raise InputError(
                f"{other}, and the per-training-point forms would use EK-FAC (the cross-entropy's curvature); pass "
                "denominators='backend'."
            )

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        self.train_inputs_ = _array_inputs(self._data.X) if self.hessian in ("cg", "lissa") else None
        state = self._fit_curvature()
        damping = self._resolve_damping(state)
        self._inverse_cache = self._make_inverse(state, damping)
        forms_backend = self._forms_backend(damping)
        n = self.y_.shape[0]
        quad, norm_sq = np.empty(n), np.empty(n)
        for start, block in self._train_blocks(y, "training gradients"):
            q, v = forms_backend.forms_block(block)
            quad[start : start + block.b] = q.cpu().numpy()
            norm_sq[start : start + block.b] = v.cpu().numpy()
            self._store_block(start, block)
        self.train_self_influence_ = quad
        self.inverse_gradient_norms_ = np.sqrt(np.maximum(norm_sq, 0))
        self.fit_report_.update(
            {
                "hessian": self.hessian,
                "curvature": self.curvature,
                "denominators": "ekfac" if forms_backend is not self._inverse_cache else "backend",
            }
        )
        if self.hessian == "ekfac":
            self.fit_report_["ekfac_scoring"] = {
                layer.module_name: (
                    "dense" if (f := self._inverse_cache.low_rank(layer.module_name)) is None
                    else f"rank {f[0].shape[1]} (1/(E + λ) to {LOW_RANK_TOL:g} relative Frobenius error)"
                )
                for layer in self._inverse_cache.layers
            }

    def _fit_curvature(self) -> Any:
        """What the backend needs before the damping is known: EK-FAC factors, the dense matrix or a product operator."""
        if self.hessian == "identity":
            return None
        if self.hessian == "ekfac":
            layers = self._fit_ekfac(self._data)
            self.fit_report_["ekfac_layers"] = [layer.module_name for layer in layers]
            samples = self.ekfac_samples
            self.fit_report_["ekfac_fisher"] = (
                "the exact expectation over the K classes (the Gauss–Newton matrix)" if samples is None
                else f"{int(samples)} label(s) per example sampled from the model (an unbiased estimate)"
            )
            for j, layer in enumerate(layers):
                for part in ("q_s", "q_a", "eigenvalues"):
                    setattr(self, f"ekfac{j}_{part}_", getattr(layer, part).cpu().numpy())
            return layers
        curvature = Curvature(self.network(), self._data, self.curvature, loss=self.loss)
        if self.hessian == "exact":
            return ExactInverse.check_size(curvature).matrix()
        return curvature

    def _resolve_damping(self, state: Any) -> float:
        """The damping used: the given value, or ``"auto"`` (:data:`DAMPING_SCALE` × ``λ_max`` of the backend's curvature)."""
        if self.hessian == "identity":
            self.fit_report_.update({"damping": 0.0, "damping_rule": "identity: no curvature, no damping"})
            return 0.0
        if self.damping != "auto":
            damping = float(self.damping)
            self.fit_report_.update({"damping": damping, "damping_rule": "given"})
            return damping
        if self.hessian == "ekfac":
            top, source = largest_eigenvalue(state), "the largest EK-FAC eigenvalue"
        elif self.hessian == "exact":
            top = power_iteration(lambda v: v @ state, state.shape[0], dtype=state.dtype, device=state.device, seed=int(self.seed))
            source = f"λ_max of the exact {self.curvature} (power iteration)"
        else:
            top, source = state.largest_eigenvalue(seed=int(self.seed)), f"λ_max of the {self.curvature} (power iteration)"
        if not top > 0:
            raise ModelError(
                f"The curvature is zero ({source} = {top:g}): every training example is fitted exactly, so damping='auto' "
                "has no scale; pass a positive `damping`."
            )
        damping = DAMPING_SCALE * top
        self.fit_report_.update(
            {
                "damping": damping,
                "damping_rule": (
                    f"auto: {DAMPING_SCALE:g} × {source} ({top:.4g}); at this scale EK-FAC agrees with exact influence "
                    "(Spearman ≥ 0.9 on small nets), smaller dampings trade that agreement for more curvature"
                ),
            }
        )
        return damping

    def _make_inverse(self, state: Any, damping: float) -> InverseCurvature:
        if self.hessian == "identity":
            return IdentityInverse()
        if self.hessian == "ekfac":
            return EKFACInverse(state, damping)
        if self.hessian == "exact":
            inverse = ExactInverse.factorise(state, damping, kind=self.curvature)
            self.hessian_factor_ = inverse.factor.cpu().numpy()
            return inverse
        if self.hessian == "cg":
            return ConjugateGradient(state, damping, tol=float(self.cg_tol), max_iter=int(self.cg_max_iter))
        return LiSSA(
            state,
            damping,
            depth=int(self.lissa_depth),
            scale=self.lissa_scale,
            repeats=int(self.lissa_repeats),
            batch_size=self.lissa_batch_size,
            tol=float(self.lissa_tol),
            seed=int(self.seed),
        )

    def _forms_backend(self, damping: float) -> InverseCurvature:
        choice = self.denominators
        if choice == "auto":
            choice = "ekfac" if self.hessian in ("cg", "lissa") else "backend"
        if choice == "backend" or self.hessian in ("ekfac", "identity"):
            return self._inverse_cache
        try:
            return EKFACInverse(self._fit_ekfac(self._data), damping)
        except ModelError as exc:
            raise ModelError(
                f"{exc} (The per-training-point denominators of hessian={self.hessian!r} use EK-FAC by default; "
                "pass denominators='backend' to solve with the backend for every training point instead.)"
            ) from exc

    def _fit_ekfac(self, data: LabelledData) -> list[LayerFactors]:
        samples = self.ekfac_samples
        if samples is not None and (int(samples) != samples or samples < 1):
            raise InputError(f"`ekfac_samples` must be None or a positive integer; got {samples!r}.")
        return fit_ekfac(self.network(), data, samples=None if samples is None else int(samples), seed=int(self.seed), progress=self.progress)

    def inverse(self) -> InverseCurvature:
        """The fitted inverse-curvature backend (rebuilt from the saved arrays after :func:`~representer.load`).

        Returns
        -------
        InverseCurvature
            ``solve(V)`` gives ``(C + λI)⁻¹`` of rows ``V`` ``(m, P)``; ``forms(G)`` the two
            per-row forms of RelatIF (:mod:`representer.fullmodel.ihvp`).

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._check_fitted()
        return self._fitted_inverse()

    def _fitted_inverse(self) -> InverseCurvature:
        if getattr(self, "_inverse_cache", None) is None:
            self._inverse_cache = self._restore_inverse(float(self.fit_report_["damping"]))
        return self._inverse_cache

    def _restore_inverse(self, damping: float) -> InverseCurvature:
        network = self.network()
        if self.hessian == "identity":
            return IdentityInverse()
        if self.hessian == "ekfac":
            layers = [
                LayerFactors(slot, *(torch.as_tensor(getattr(self, f"ekfac{j}_{part}_")).to(network.device, network.dtype) for part in ("q_s", "q_a", "eigenvalues")))
                for j, slot in enumerate(layer_slots(network))
            ]
            return EKFACInverse(layers, damping)
        if self.hessian == "exact":
            return ExactInverse(torch.as_tensor(self.hessian_factor_).to(network.device, network.dtype))
        data = LabelledData(self.train_inputs_, self.y_, self.model_.batch_size)
        return self._make_inverse(Curvature(network, data, self.curvature, loss=self.loss), damping)

    # ------------------------------------------------------------------ scoring
    def _train_scale(self) -> np.ndarray | None:
        return None

    def _low_rank_parts(self) -> frozenset[int]:
        """Rank-one parts scored through the low-rank ``1/(E + λ)`` of their layer (EK-FAC, unprojected)."""
        if self.hessian != "ekfac" or self.fit_report_.get("projection_dim") is not None:
            return frozenset()
        inverse = self._fitted_inverse()
        parts = self.store().parts
        return frozenset(j for j, p in enumerate(parts) if p.kind == "outer" and inverse.low_rank(p.slot.module_name) is not None)

    def _build_kernel(self) -> BilinearKernel:
        solved = self.hessian != "identity" and self.fit_report_.get("projection_dim") is None
        return self._kernel(solved=solved, scale=self._train_scale(), low_rank=self._low_rank_parts())

    def _test_factors(self, data: LabelledData, rows: _TestRows) -> None:
        inverse = self.inverse()
        projector = self.projector()
        prefixes = part_prefixes(len(self.store().parts))
        for start, block in self._test_blocks(data):
            if self.hessian == "identity":
                rows.put(start, self._dot_tensors(block))
                continue
            for offset, chunk in block.row_chunks():
                solved = inverse.solve_block(chunk, low_rank=True) if self.hessian == "ekfac" and projector is None else inverse.solve_block(chunk)
                if projector is None:
                    rows.put(start + offset, solved_tensors(chunk.parts, solved, prefixes))
                else:
                    rows.put(start + offset, {"x": projector.project(join_flat(chunk.parts, solved, chunk.n_params))})
        self.solver_report_ = dict(inverse.report)

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_


class FullModelRelatIF(FullModelInfluence):
    """Relative influence over all parameters (RelatIF §3, Appendix C): influence over a per-point norm.

    ``kind="theta"``: ``I(t, i)/‖(C + λI)⁻¹g_i‖``; ``kind="loss"``: ``I(t, i)/√(g_iᵀ(C + λI)⁻¹g_i)``,
    with ``I(t, i)`` the influence of :class:`FullModelInfluence` (positive = helpful). Every backend
    supports both kinds; with ``hessian="cg"`` / ``"lissa"`` the denominators are EK-FAC's unless
    ``denominators="backend"`` (the paper's recipe). Denominators below 1e-12 are clamped, with a
    warning counting them.

    Parameters
    ----------
    model : nn.Module or TorchClassifier
        The network, in eval mode.
    kind : {"theta", "loss"}, default "theta"
        The normaliser: ``‖(C + λI)⁻¹g_i‖`` (θ-RelatIF) or ``√(g_iᵀ(C + λI)⁻¹g_i)`` (ℓ-RelatIF).
    **kwargs
        Every parameter of :class:`FullModelInfluence` (``hessian``, ``damping``, ``loss``,
        ``measurement``, ``denominators`` …) and the engine's.

    Attributes
    ----------
    denominators_ : ndarray of shape (n,)
        The per-training-point normaliser (after the floor).

    Notes
    -----
    :meth:`self_influence` is ``g_iᵀ(C + λI)⁻¹g_i / denominator_i``; the other fitted attributes are
    those of :class:`FullModelInfluence`.
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

    ``g_i = ∇_θ z_{y_i}(x_i)`` (the ``loss``, by default the training label's logit) and
    ``g_t = ∇_θ z_c(x_t)`` (the ``measurement`` of the explained class ``c``), ``ĝ = Rᵀg`` after a
    seeded random projection when ``projection_dim`` is set. Only the training side is normalised,
    after projection (one-sided, as in the DualView code). Positive = the two gradients agree: a step
    that raises ``z_{y_i}`` at ``i`` raises ``z_c`` at ``t``.

    Parameters
    ----------
    model : nn.Module or TorchClassifier
        The network, in eval mode.
    projection_dim : int, "auto" or None, default "auto"
        ``k`` (SIM-rp; DualView uses 128), ``None`` (SIM, exact gradients) or ``"auto"`` (exact
        unless that exceeds :data:`AUTO_STORE_BYTES`).
    projection : {"gaussian", "rademacher"}, default "gaussian"
        The entries of ``R``: ``N(0, 1)/√k`` (as DualView) or ``±1/√k``.
    seed : int, default 0
        The projection's seed.
    cosine : bool, default False
        Also normalise the test gradient (the ranking per test point is unchanged).
    loss : Measurement, default ClassLogit()
        The training-side function whose gradients are stored.
    measurement : Measurement, default ClassLogit()
        The test-side function whose gradient is compared (e.g. ``Margin()``).
    params, compute_dtype, **engine
        As for :class:`FullModelInfluence`.

    Attributes
    ----------
    grad{j}_{f}_ : ndarray of shape (n, w_j)
        The stored (possibly projected) training gradients.
    gradient_norms_ : ndarray of shape (n,)
        ``‖ĝ_i‖``, the self-influence score.
    train_features_ : ndarray of shape (n, K)
        The training logits.
    """

    name = "sim_full"
    _parameter_constraints: ClassVar[dict[str, list]] = {"cosine": [Boolean()]}

    def __init__(
        self,
        model: Any,
        *,
        projection_dim: int | Literal["auto"] | None = "auto",
        projection: ProjectionKind = "gaussian",
        seed: int = 0,
        cosine: bool = False,
        loss: Measurement = ClassLogit(),
        measurement: Measurement = ClassLogit(),
        params: Sequence[str] | None = None,
        compute_dtype: str = "float64",
        **engine: Any,
    ) -> None:
        super().__init__(
            model, loss=loss, measurement=measurement, params=params, compute_dtype=compute_dtype,
            projection_dim=projection_dim, projection=projection, seed=seed, **engine,
        )
        self.cosine = cosine

    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*self._store_arrays(), "gradient_norms_")

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        norms = np.empty(y.shape[0])
        for start, block in self._train_blocks(y, "training gradients"):
            stored = self._store_block(start, block)
            norms[start : start + block.b] = stored.sq_norms().sqrt().cpu().numpy()
        self.gradient_norms_ = norms
        self.fit_report_["zero_gradients"] = int((norms == 0).sum())

    def _build_kernel(self) -> BilinearKernel:
        inverse = np.divide(1.0, self.gradient_norms_, out=np.zeros_like(self.gradient_norms_), where=self.gradient_norms_ > 0)
        return self._kernel(solved=False, scale=inverse)

    def _test_factors(self, data: LabelledData, rows: _TestRows) -> None:
        for start, block in self._test_blocks(data):
            rows.put(start, self._dot_tensors(block, normalise=bool(self.cosine)))

    def _self_influence(self) -> np.ndarray:
        return self.gradient_norms_


class TracInCP(_FullModelExplainer):
    """TracIn over checkpoints (Pruthi et al. 2020): ``Σ_c η_c ⟨∇ℓ_t(θ_c), ∇ℓ_i(θ_c)⟩``.

    ``∇ℓ_i`` is the gradient of the training ``loss`` at training point ``i`` and ``∇ℓ_t`` that of the
    ``measurement`` at the explained class of test point ``t`` (loss forms), at each saved checkpoint
    ``θ_c`` with learning rate ``η_c``. Positive = proponent: a gradient step on ``i`` lowered the test
    loss. Self-influence: ``Σ_c η_c ‖∇ℓ_i(θ_c)‖²``. Linear layers are stored as the factors of their
    rank-one gradients, ``√η_c δ`` and ``ã``, so the score of such a layer is ``η_c (δ_t·δ_i)(ã_t·ã_i)``
    and the memory per training point is ``C · Σ_Linear (out + in + 1)`` (+ the dense size of the other
    layers); with ``projection_dim=k`` each checkpoint's gradients are projected by the same seeded
    ``R`` (TracIn-RP).

    With ``params`` naming a subset of the layers, the gradients at checkpoint ``c`` are still taken
    through the whole network *as it was at* ``c``: the other parameters and the buffers come from
    the checkpoint too. Checkpoints that hold only the chosen parameters (a recorder with
    ``params=``) leave the rest at the network's current weights, which is exact only if those
    layers were frozen during training; ``fit_report_["other_layers"]`` says which applied. The
    explained class of ``target="predicted"`` is the network's own prediction.

    Parameters
    ----------
    model : nn.Module or TorchClassifier
        The network, in eval mode (its architecture must match the checkpoints).
    projection_dim : int, "auto" or None, default "auto"
        ``k`` (TracIn-RP), ``None`` (exact) or ``"auto"`` (exact unless that exceeds :data:`AUTO_STORE_BYTES`).
    projection : {"gaussian", "rademacher"}, default "gaussian"
        The entries of ``R``.
    seed : int, default 0
        The projection's seed.
    loss : Measurement, default CrossEntropy()
        The training loss whose gradients are stored.
    measurement : Measurement, default CrossEntropy()
        The test-side function whose gradient is explained.
    params, compute_dtype, **engine
        As for :class:`FullModelInfluence`.

    Attributes
    ----------
    grad{j}_{f}_ : ndarray of shape (n, w_j)
        The stored gradients, checkpoint-major.
    checkpoints_ : ndarray of shape (C, P)
        The chosen parameters at each checkpoint.
    checkpoint_context_ : ndarray of shape (C, P_other)
        The other parameters and buffers of each checkpoint (``(C, 0)`` when the checkpoints hold only
        the chosen ones).
    learning_rates_ : ndarray of shape (C,)
        ``η_c``.
    train_self_influence_ : ndarray of shape (n,)
        ``Σ_c η_c ‖∇ℓ_i(θ_c)‖²``.
    """

    name = "tracin_cp"

    def __init__(
        self,
        model: Any,
        *,
        projection_dim: int | Literal["auto"] | None = "auto",
        projection: ProjectionKind = "gaussian",
        seed: int = 0,
        loss: Measurement = CrossEntropy(),
        measurement: Measurement = CrossEntropy(),
        params: Sequence[str] | None = None,
        compute_dtype: str = "float64",
        **engine: Any,
    ) -> None:
        super().__init__(
            model, loss=loss, measurement=measurement, params=params, compute_dtype=compute_dtype,
            projection_dim=projection_dim, projection=projection, seed=seed, **engine,
        )

    @property
    def _copies(self) -> int:  # type: ignore[override]
        return len(getattr(self, "_pending", ((),))[0]) or 1

    @property
    def _fitted_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*self._store_arrays(), "checkpoints_", "checkpoint_context_", "learning_rates_", "train_self_influence_")

    def fit(self, X: Any, y: Any, *, checkpoints: Sequence[Mapping[str, Tensor]] = (), learning_rates: Sequence[float] = ()) -> "TracInCP":
        """Store the training gradients at every checkpoint, scaled by ``√η_c``.

        Parameters
        ----------
        X, y
            The training inputs and labels, as for the other full-model explainers' ``fit``.
        checkpoints : sequence of dict of str to Tensor
            The network's ``state_dict()`` at each checkpoint (or only the parameters in ``params``).
        learning_rates : sequence of float
            ``η_c`` > 0, one per checkpoint.

        Returns
        -------
        TracInCP
            ``self``, fitted.

        Raises
        ------
        InputError
            No checkpoints, not one learning rate per checkpoint, a non-positive learning rate, a
            checkpoint that lacks a parameter or has another shape, checkpoints of mixed kinds, bad ``X``
            or ``y``, or a hyper-parameter outside its constraints. The explainer is then left as it was.
        ModelError
            A network in training mode, or not a torch network.
        """
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

    def _per_checkpoint(self, data: LabelledData | None, classes: np.ndarray, desc: str):
        """``(c, start, √η_c-scaled block)`` over checkpoints (outer loop) and batches of ``data`` (``None``: training set)."""
        network = self.network()
        original = network.flat_parameters()
        original_context = (dict(network.frozen), dict(network.buffers))
        n_ckpt = len(self.learning_rates_)
        try:
            for c, (theta, context, lr) in enumerate(zip(self.checkpoints_, self.checkpoint_context_, self.learning_rates_)):
                network.load_flat(torch.as_tensor(theta))
                if context.size:
                    self._load_context(context)
                label = f"{desc} (checkpoint {c + 1}/{n_ckpt})" if n_ckpt > 1 else desc
                if data is None:
                    current = self._train_logits is None and self._at_current_weights(original, original_context)
                    blocks = self._train_blocks(classes, label, record_logits=current)
                else:
                    blocks = self._test_blocks(data, label)
                for start, block in blocks:
                    yield c, start, block.scaled(float(lr) ** 0.5)
        finally:
            network.load_flat(original)
            network.frozen, network.buffers = original_context

    def _at_current_weights(self, original: Tensor, context: tuple[dict, dict]) -> bool:
        """Whether the network now holds the weights it was given (its logits are then ``train_features_``)."""
        network = self.network()
        same = torch.equal(network.flat_parameters(), original)
        for now, given in zip((network.frozen, network.buffers), context):
            same = same and all(torch.equal(now[k], given[k]) for k in given)
        return same

    def _fit(self, logits: np.ndarray, y: np.ndarray) -> None:
        checkpoints, learning_rates = self._pending
        chosen, context = self.network().params.names, self._context_names()
        self.checkpoints_ = np.stack([self._checkpoint_vector(s, chosen) for s in checkpoints])
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
        influence = np.zeros(y.shape[0])
        for c, start, block in self._per_checkpoint(None, y, "training gradients"):
            stored = self._store_block(start, block, copy=c)
            influence[start : start + block.b] += stored.sq_norms().cpu().numpy()
        self.train_self_influence_ = influence
        self.fit_report_.update({
            "n_checkpoints": len(checkpoints),
            "other_layers": "from each checkpoint" if self.checkpoint_context_.shape[1] or not context
            else "the network's current weights (checkpoints hold only the chosen parameters)",
        })

    def _build_kernel(self) -> BilinearKernel:
        return self._kernel(solved=False)

    def _test_factors(self, data: LabelledData, rows: _TestRows) -> None:
        for c, start, block in self._per_checkpoint(data, data.y.numpy(), "test gradients"):
            rows.put(start, self._dot_tensors(block, copy=c))

    def _self_influence(self) -> np.ndarray:
        return self.train_self_influence_


def _row_count(X: Any) -> int | None:
    """The number of examples in ``X`` when it can be told without iterating (``None`` for a DataLoader)."""
    if isinstance(X, DataLoader):
        return None
    if isinstance(X, Mapping):
        X = next(iter(X.values()), None)
    try:
        return len(X)
    except TypeError:
        return None


def _array_inputs(X: Any) -> np.ndarray | None:
    """``X`` as a numpy array when it is an array or tensor (saved for CG / LiSSA), else ``None``."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    if isinstance(X, np.ndarray):
        return X
    return None
