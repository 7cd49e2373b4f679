"""representer: which training examples made a classifier predict this, and which labels are wrong.

Sign and orientation conventions are documented once, in :mod:`representer.explanation`.

The public names below are imported on first use (PEP 562), so ``import representer`` and the
``representer`` command's ``--help`` do not pay for torch; ``rp.RPSL2`` imports what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name → the submodule that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Checkpoint", "CheckpointRecorder", "load_checkpoints"), "checkpoints"),
    "ClassMapping": "classes",
    **dict.fromkeys(("cumulative_attribution", "find_label_issues"), "debugging"),
    "LabelIssues": "rankings",
    **dict.fromkeys(
        ("FileFormatError", "InputError", "ModelError", "NotFittedError", "OutputError", "RepresenterError",
         "RepresenterWarning", "StaleStateError", "UntrustedCodeError"),
        "errors",
    ),
    **dict.fromkeys(("Explanation", "TopK"), "explanation"),
    **dict.fromkeys(
        ("DualView", "RPSL2", "RPSLJE", "Explainer", "FeatureSimilarity", "FullModelInfluence", "FullModelRelatIF",
         "FullModelSimilarity", "GradientSimilarity", "InfluenceFunction", "RandomAttribution", "RelatIF", "TracInCP",
         "load"),
        "methods",
    ),
    **dict.fromkeys(("ClassifierAdapter", "Features", "TorchClassifier", "TreeEnsemble"), "models"),
}

__all__ = sorted(_EXPORTS, key=lambda name: (name[0].islower(), name))


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule, ``rp.evaluation``) on first access and keep it."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see: the names above, imported eagerly
    from .checkpoints import Checkpoint, CheckpointRecorder, load_checkpoints
    from .classes import ClassMapping
    from .debugging import cumulative_attribution, find_label_issues
    from .rankings import LabelIssues
    from .errors import (
        FileFormatError,
        InputError,
        ModelError,
        NotFittedError,
        OutputError,
        RepresenterError,
        RepresenterWarning,
        StaleStateError,
        UntrustedCodeError,
    )
    from .explanation import Explanation, TopK
    from .methods import (
        RPSL2,
        RPSLJE,
        DualView,
        Explainer,
        FeatureSimilarity,
        FullModelInfluence,
        FullModelRelatIF,
        FullModelSimilarity,
        GradientSimilarity,
        InfluenceFunction,
        RandomAttribution,
        RelatIF,
        TracInCP,
        load,
    )
    from .models import ClassifierAdapter, Features, TorchClassifier, TreeEnsemble
