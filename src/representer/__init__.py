"""representer: which training examples made a classifier predict this, and which labels are wrong.

Sign and orientation conventions are documented once, in :mod:`representer.explanation`.
"""

__version__ = "0.1.0"

from .checkpoints import Checkpoint, CheckpointRecorder, load_checkpoints  # noqa: E402
from .classes import ClassMapping  # noqa: E402
from .debugging import LabelIssues, cumulative_attribution, find_label_issues  # noqa: E402
from .errors import (  # noqa: E402
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
from .explanation import Explanation, TopK  # noqa: E402
from .methods import (  # noqa: E402
    DualView,
    RPSL2,
    RPSLJE,
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
from .models import ClassifierAdapter, Features, TorchClassifier, TreeEnsemble  # noqa: E402

__all__ = [
    "Checkpoint",
    "CheckpointRecorder",
    "ClassMapping",
    "ClassifierAdapter",
    "DualView",
    "Explainer",
    "Explanation",
    "FeatureSimilarity",
    "Features",
    "FileFormatError",
    "FullModelInfluence",
    "FullModelRelatIF",
    "FullModelSimilarity",
    "GradientSimilarity",
    "InfluenceFunction",
    "InputError",
    "LabelIssues",
    "ModelError",
    "NotFittedError",
    "OutputError",
    "RPSL2",
    "RPSLJE",
    "RandomAttribution",
    "RelatIF",
    "RepresenterError",
    "RepresenterWarning",
    "StaleStateError",
    "TopK",
    "TorchClassifier",
    "TracInCP",
    "TreeEnsemble",
    "UntrustedCodeError",
    "cumulative_attribution",
    "find_label_issues",
    "load",
    "load_checkpoints",
]
