"""What the full-model methods differentiate: a per-example scalar of a network's logits and a class.

A measurement ``m(z, c)`` maps logits ``z`` ``(b, K)`` and classes ``c`` ``(b,)`` (int64) to one
number per example, ``(b,)``. The full-model explainers take two: ``loss=``, the training objective
whose per-example gradients ``g_i = ∇_θ ℓ(z_i, y_i)`` (and, for influence, whose curvature) they use,
and ``measurement=``, the function of the explained point whose gradient ``∇_θ m(z_t, c)`` they
explain (Koh & Liang's test loss, TRAK's margin, a regression error …).

Sign convention. A measurement says which direction is good: ``larger_is_better=False`` for a loss
(cross-entropy, a squared error), ``True`` for a score (a logit, a margin). The methods differentiate
its *loss form*

    ℓ_m(z, c) = m(z, c)       if smaller is better,
    ℓ_m(z, c) = −m(z, c)      if larger is better            (:func:`loss_form`),

so that every score keeps the library's one convention, positive = helpful: for influence,
``a(t, i) = ∇ℓ_m(t)ᵀ(C + λI)⁻¹∇ℓ(i) > 0`` means up-weighting ``i`` lowers the loss form at ``t``, i.e.
lowers a loss or raises a margin.

Built-ins (saved and loaded by :attr:`name`): :class:`CrossEntropy` (the default loss),
:class:`ClassLogit` (SIM's quantity) and :class:`Margin`. A measurement of your own is any object with
a ``name``, a ``larger_is_better`` flag and ``__call__(logits, targets)``, differentiable in the logits;
an explainer that uses one cannot be saved (there is no code in a saved file to rebuild it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch

from .network import class_logit, example_loss

Tensor = torch.Tensor
#: A per-example scalar ``(logits (b, K), targets (b,)) -> (b,)``, differentiated as it is.
Objective = Callable[[Tensor, Tensor], Tensor]


@runtime_checkable
class Measurement(Protocol):
    """A per-example scalar of the logits and a class, with its name and its good direction.

    Attributes
    ----------
    name : str
        What it is called in ``fit_report_``, in explanations' metadata and (for the built-ins) in saves.
    larger_is_better : bool
        ``False`` for a loss (the methods differentiate ``m``), ``True`` for a score such as a margin
        (they differentiate ``−m``).
    """

    name: str
    larger_is_better: bool

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The measurement of each example.

        Parameters
        ----------
        logits : Tensor of shape (b, K)
            The network's outputs.
        targets : Tensor of shape (b,)
            The class of each example (int64): its training label, or the explained class.

        Returns
        -------
        Tensor of shape (b,)
            One value per example, differentiable in ``logits``.
        """
        ...


@dataclass(frozen=True)
class CrossEntropy:
    """``ℓ(z, c) = logsumexp(z) − z_c`` (softmax head) or ``BCE(z, c)`` (one-logit head); smaller is better.

    The default ``loss`` of every full-model explainer and the default ``measurement`` of influence,
    RelatIF and TracIn. Its curvature ``∂²ℓ/∂z²`` is the one EK-FAC and the Gauss–Newton matrix use.
    """

    name: ClassVar[str] = "cross_entropy"
    larger_is_better: ClassVar[bool] = False

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-example cross-entropy ``(b,)`` of ``logits`` ``(b, K)`` against ``targets`` ``(b,)``."""
        return example_loss(logits, targets)


@dataclass(frozen=True)
class ClassLogit:
    """``z_c``, the logit of class ``c`` (``±z`` for a one-logit head: class 1 is ``+z``); larger is better.

    SIM's quantity (the default ``loss`` and ``measurement`` of :class:`~representer.FullModelSimilarity`).
    """

    name: ClassVar[str] = "class_logit"
    larger_is_better: ClassVar[bool] = True

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The logit of each example's class ``(b,)``."""
        return class_logit(logits, targets)


@dataclass(frozen=True)
class Margin:
    """``z_c − max_{k≠c} z_k``, the margin of class ``c`` over the strongest other class; larger is better.

    Koh & Liang's and TRAK's margin (for a softmax over two classes it is the log-odds
    ``log p_c/(1 − p_c)``; a one-logit head's margin is ``±z``). Positive exactly when the model
    predicts ``c``. Its gradient at a tie between the other classes is that of one of them.
    """

    name: ClassVar[str] = "margin"
    larger_is_better: ClassVar[bool] = True

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The margin of each example's class ``(b,)``."""
        if logits.shape[1] == 1:
            return class_logit(logits, targets)
        own = logits.gather(1, targets[:, None])[:, 0]
        others = logits.scatter(1, targets[:, None], -torch.inf)
        return own - others.amax(dim=1)


#: The built-in measurements by :attr:`Measurement.name` (what a save records).
BUILT_IN: dict[str, type] = {cls.name: cls for cls in (CrossEntropy, ClassLogit, Margin)}


def is_built_in(measurement: Measurement) -> bool:
    """Whether ``measurement`` is one of :data:`BUILT_IN` (exactly that class, so its name rebuilds it)."""
    return type(measurement) is BUILT_IN.get(getattr(measurement, "name", None))


def built_in(name: str) -> Measurement:
    """The built-in measurement called ``name`` (``KeyError`` for another name)."""
    return BUILT_IN[name]()


@dataclass(frozen=True)
class _Negated:
    measurement: Measurement

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        return -self.measurement(logits, targets)


def loss_form(measurement: Measurement) -> Objective:
    """What the methods differentiate: ``m`` when smaller is better, ``−m`` when larger is better (module docstring)."""
    return _Negated(measurement) if measurement.larger_is_better else measurement
