"""Review suspicious training labels, keep the decisions, apply them, and measure what they buy.

* :mod:`~representer.review.session` — :func:`open_review`: a run folder's ranking
  (``representer debug``), model and explainer, and its decisions;
* :mod:`~representer.review.store` — :class:`DecisionStore`: the decisions in SQLite
  (``RUN/review.sqlite``), one row per decision, history kept;
* :mod:`~representer.review.app` / :mod:`~representer.review.server` — the local web app
  (Starlette, served by uvicorn; needs the ``review`` extra);
* :mod:`~representer.review.corrections` — the corrections file (``--export``) and
  ``fit --corrections``;
* :mod:`~representer.review.retrain` — retrain on the given vs the corrected labels (``--train``).

The command is ``representer review RUN`` (``docs/review.md``). Importing this package does not
import the web framework.
"""

from .corrections import Corrections, apply_corrections, apply_record, read_corrections, write_corrections
from .session import Review, open_review
from .store import DecisionConflict, DecisionStore

__all__ = [
    "Corrections",
    "DecisionConflict",
    "DecisionStore",
    "Review",
    "apply_corrections",
    "apply_record",
    "open_review",
    "read_corrections",
    "write_corrections",
]
