"""Gradient-boosted tree ensembles as features × linear head + bias.

A boosted classifier computes raw margins ``z_k(x) = b_k + Σ_{m : class(m) = k} f_m(x)``, where
``f_m(x)`` is the value of the leaf of tree ``m`` that ``x`` falls into (learning-rate, DART and
random-forest averaging factors folded in) and ``b`` is the base margin. :class:`TreeEnsemble`
writes this sum exactly as ``φ(x) @ W.T + b`` in one of three ways:

* ``"margins"`` (default): ``φ_m(x) = f_m(x)``, one feature per tree (``D = M`` trees). ``W`` is a
  0/1 ``(K, M)`` matrix routing tree ``m`` to its class (all ones for a binary model, ``K = 1``).
* ``"leaves"``: ``φ`` is the one-hot leaf membership of every tree (``D = L``, the total number of
  leaves; each row has exactly ``M`` ones) and ``W[k, l]`` is the value of leaf ``l`` if its tree
  belongs to class ``k``, else 0.
* ``"paper"``: the RPS-LJE paper's XGBoost construction (spec §3.7), binary only, centred:
  ``φ_m(x) = σ(f_m(x)) − ½``, ``W = 1_M``, ``b = 0``. This head does NOT reproduce the booster.

Per-tree values come from one leaf-index prediction of the booster (``pred_leaf`` / ``apply``) and a
lookup table of leaf values, so ``features`` costs about one ``predict`` call, not ``M`` of them.
Supported: xgboost ``Booster`` / ``XGBClassifier`` (gbtree and dart boosters), lightgbm ``Booster`` /
``LGBMClassifier``, scikit-learn ``GradientBoostingClassifier`` and ``HistGradientBoostingClassifier``;
binary (``K = 1``, sigmoid head on the logit of class 1) and multi-class (``K`` softmax logits).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax

from ..errors import InputError, ModelError
from .base import ClassifierAdapter

FeatureKind = Literal["margins", "leaves", "paper"]
_FEATURE_KINDS = ("margins", "leaves", "paper")
_SUPPORTED = (
    "xgboost Booster / XGBClassifier, lightgbm Booster / LGBMClassifier, "
    "sklearn GradientBoostingClassifier / HistGradientBoostingClassifier"
)
_XGB_OBJECTIVES = ("binary:logistic", "binary:logitraw", "multi:softprob", "multi:softmax")
_LGB_OBJECTIVES = ("binary", "multiclass")


@dataclass(frozen=True)
class _Forest:
    """A tree ensemble reduced to lookup tables.

    ``node_values[m][j]`` is the (scaled) output of node ``j`` of tree ``m`` in the node numbering
    that ``leaf_ids`` returns, ``is_leaf[m][j]`` says whether that node is a leaf, ``tree_class[m]``
    is the logit tree ``m`` adds to, ``base_margin`` the ``(K,)`` constant of the raw margin.
    """

    kind: str
    n_outputs: int
    n_columns: int
    node_values: list[np.ndarray]
    is_leaf: list[np.ndarray]
    tree_class: np.ndarray
    base_margin: np.ndarray
    leaf_ids: Callable[[Any], np.ndarray]
    refusals: tuple[type[BaseException], ...]
    digest: bytes
    averaged: bool = False


class TreeEnsemble(ClassifierAdapter):
    """A boosted tree classifier split into per-tree (or per-leaf) features and a linear head.

    Parameters
    ----------
    model
        A fitted xgboost ``Booster`` / ``XGBClassifier``, lightgbm ``Booster`` / ``LGBMClassifier``,
        or scikit-learn ``GradientBoostingClassifier`` / ``HistGradientBoostingClassifier`` with a
        binary or multi-class log-loss objective.
    features
        ``"margins"`` (default, exact): per-tree raw margins ``f_m(x)``, ``D = n_trees``.
        ``"leaves"`` (exact): one-hot leaf membership, ``D = n_leaves``; the dense ``features(X)``
        takes ``8 · n · n_leaves`` bytes, so prefer :meth:`features_sparse` (``n · n_trees`` nonzeros).
        ``"paper"`` (binary only, NOT faithful): the RPS-LJE paper's XGBoost experiment (spec §3.7),
        centred: ``φ_m(x) = σ(f_m(x)) − ½`` with weight ``1_M`` and bias ``0``. The paper used
        ``σ(f_m)`` with bias ``−(M − 1)/2``, i.e. this logit plus a constant ``+½``; that offset is
        the only part of its surrogate that is not odd in the margins, and it made every ranking
        depend on which class is coded 1 (German Credit, identical flips: influence self-influence
        ROC-AUC 0.344 with one coding, 0.759 with the other). Centred, recoding the classes
        negates the margins, the features and the logit together (``σ(−f) − ½ = −(σ(f) − ½)``),
        which leaves every head method's self-influence unchanged. The logit
        ``Σ_m (σ(f_m) − ½) ≈ ¼ Σ_m f_m`` is a different scale from the booster's ``b + Σ_m f_m`` and
        ignores the base margin, so ``logits`` and ``predict_proba`` do not reproduce the model.
        The paper's code took ``predict_proba`` of each single tree, which equals ``σ(f_m)`` only
        with ``base_score = 0.5``; here it is ``σ(f_m) − ½`` always.

    Attributes
    ----------
    weight, bias
        The head: ``features(X) @ weight.T + bias`` equals the booster's raw margin (``margins``,
        ``leaves``) up to the booster's own float32 rounding (xgboost: relative 1e-6), except for
        lightgbm ``boosting="rf"``, whose ``raw_score`` is the unaveraged tree sum while its
        probabilities use the average; the head gives the average. ``bias`` is the base margin: xgboost's
        ``base_score`` mapped to margin space, sklearn's init-estimator prediction, and 0 for
        lightgbm, which folds its initial score into the first tree of each class.
    n_trees, n_leaves, tree_class, model_kind
        Number of trees ``M``, total leaves, the class each tree adds to, and one of
        ``"xgboost"``, ``"lightgbm"``, ``"sklearn-gb"``, ``"sklearn-hgb"``.
    """

    has_bias = True

    def __init__(self, model: Any, features: FeatureKind = "margins") -> None:
        if features not in _FEATURE_KINDS:
            raise InputError(f"`features` must be one of {_FEATURE_KINDS}; got {features!r}.")
        forest = _load_forest(model)
        if features == "paper" and forest.n_outputs != 1:
            raise ModelError(
                f"`features='paper'` is the binary construction of the RPS-LJE paper, but the model has "
                f"{forest.n_outputs} classes; use features='margins' or 'leaves' for multi-class models."
            )
        self.model = model
        self.feature_kind = features
        self._forest = forest
        sizes = np.array([len(v) for v in forest.node_values], dtype=np.int64)
        self._node_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._node_value = np.concatenate(forest.node_values).astype(np.float64)
        leaf_mask = np.concatenate(forest.is_leaf).astype(bool)
        self._leaf_column = np.full(leaf_mask.shape, -1, dtype=np.int64)
        self._leaf_column[leaf_mask] = np.arange(int(leaf_mask.sum()))
        self.weight, self.bias = self._head(leaf_mask)

    @property
    def model_kind(self) -> str:
        """``"xgboost"``, ``"lightgbm"``, ``"sklearn-gb"`` or ``"sklearn-hgb"``."""
        return self._forest.kind

    @property
    def n_trees(self) -> int:
        """Number of trees ``M`` (for multi-class, trees of all classes)."""
        return int(self._forest.tree_class.shape[0])

    @property
    def n_leaves(self) -> int:
        """Total number of leaves over all trees (the width of ``"leaves"`` features)."""
        return int((self._leaf_column >= 0).sum())

    @property
    def averages_trees(self) -> bool:
        """True for a random forest (lightgbm ``boosting="rf"``): its trees are averaged, not boosted."""
        return self._forest.averaged

    @property
    def tree_class(self) -> np.ndarray:
        """``(M,)`` index of the logit each tree adds to (all 0 for a binary model)."""
        return self._forest.tree_class.copy()

    def features(self, X: Any) -> np.ndarray:
        """φ(X) as a dense array; see the class docstring for each feature kind.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, n_columns)
            The booster's input table.

        Returns
        -------
        ndarray of shape (n, D)
            float64 features (``D = n_trees`` for margins, ``n_leaves`` for leaves).

        Raises
        ------
        InputError
            ``X`` not 2-dimensional, or with another number of columns than the booster was trained on.
        """
        if self.feature_kind == "leaves":
            return self.features_sparse(X).toarray()
        margins = self._tree_margins(X)
        return expit(margins) - 0.5 if self.feature_kind == "paper" else margins

    def features_sparse(self, X: Any) -> sp.csr_matrix:
        """φ(X) as a sparse matrix (for ``"leaves"``: ``n_trees`` ones per row, sorted columns).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, n_columns)
            The booster's input table.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n, D)
            float64 features.
        """
        if self.feature_kind != "leaves":
            return sp.csr_matrix(self.features(X))
        rows = self._global_node_ids(X)
        n, m = rows.shape
        columns = self._leaf_column[rows].ravel()
        indptr = np.arange(0, n * m + 1, m, dtype=np.int64)
        return sp.csr_matrix((np.ones(n * m), columns, indptr), shape=(n, self.n_leaves))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from the head: ``[1 − σ(z), σ(z)]`` for binary, ``softmax(z)`` else.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, n_columns)
            The booster's input table.

        Returns
        -------
        ndarray of shape (n, n_classes)
            Rows sum to 1.
        """
        logits = self.logits(X)
        if self.is_binary:
            p = expit(logits[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(logits, axis=1)

    def parameter_hashes(self) -> dict[str, str]:
        """Hashes of the head, the feature kind and the model's dump (trees with equal heads differ).

        Returns
        -------
        dict of str to str
            Part name → hash.
        """
        trees = hashlib.blake2b(self._forest.digest, digest_size=12).hexdigest()
        return {**super().parameter_hashes(), "features": self.feature_kind, "trees": trees}

    def _head(self, leaf_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        forest, m = self._forest, self.n_trees
        if self.feature_kind == "paper":
            return np.ones((1, m)), np.zeros(1)
        if self.feature_kind == "margins":
            weight = np.zeros((forest.n_outputs, m))
            weight[forest.tree_class, np.arange(m)] = 1.0
            return weight, forest.base_margin.astype(np.float64)
        tree_of_node = np.repeat(np.arange(m), [len(v) for v in forest.node_values])
        weight = np.zeros((forest.n_outputs, self.n_leaves))
        weight[forest.tree_class[tree_of_node[leaf_mask]], np.arange(self.n_leaves)] = self._node_value[leaf_mask]
        return weight, forest.base_margin.astype(np.float64)

    def _tree_margins(self, X: Any) -> np.ndarray:
        return self._node_value[self._global_node_ids(X)]

    def _global_node_ids(self, X: Any) -> np.ndarray:
        X = _check_input(X, self._forest.n_columns)
        try:
            ids = np.asarray(self._forest.leaf_ids(X))
        except self._forest.refusals as exc:
            raise InputError(f"`X` was refused by the {self.model_kind} model: {exc}") from exc
        ids = ids.reshape(ids.shape[0], self.n_trees).astype(np.int64)
        ids += self._node_offset
        return ids


def _check_input(X: Any, n_columns: int) -> Any:
    """Return ``X`` as a DataFrame (kept, for categorical columns) or a 2-d array; check its width."""
    if not (hasattr(X, "columns") and hasattr(X, "iloc")):
        if hasattr(X, "detach"):
            X = X.detach().cpu().numpy()
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"`X` must be a numeric array or a pandas DataFrame; got {type(X).__name__} ({exc}).") from exc
    if len(X.shape) != 2:
        raise InputError(f"`X` must be 2-dimensional (n_samples, n_columns); got shape {X.shape}. Use X.reshape(1, -1) for one row.")
    if X.shape[1] != n_columns:
        raise InputError(f"`X` has {X.shape[1]} columns but the model was trained on {n_columns}; pass the same columns.")
    if X.shape[0] == 0:
        raise InputError("`X` has no rows; pass at least one.")
    return X


def _load_forest(model: Any) -> _Forest:
    modules = {cls.__module__.split(".")[0] for cls in type(model).__mro__}
    if "xgboost" in modules:
        return _xgboost_forest(model)
    if "lightgbm" in modules:
        return _lightgbm_forest(model)
    from sklearn.base import is_regressor
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

    if isinstance(model, GradientBoostingClassifier):
        return _sklearn_gb_forest(model)
    if isinstance(model, HistGradientBoostingClassifier):
        return _sklearn_hgb_forest(model)
    if is_regressor(model):
        raise ModelError(f"`model` is a regressor ({type(model).__name__}); TreeEnsemble needs a classifier: {_SUPPORTED}.")
    raise ModelError(f"`model` of type {type(model).__name__} is not supported; pass one of: {_SUPPORTED}.")


def _require_fitted(model: Any) -> None:
    from sklearn.exceptions import NotFittedError as SklearnNotFitted
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except SklearnNotFitted as exc:
        raise ModelError(f"`model` ({type(model).__name__}) is not fitted; call model.fit(X, y) first.") from exc


def _regressor_error(model: Any) -> ModelError:
    return ModelError(f"`model` is a regressor or ranker ({type(model).__name__}); TreeEnsemble needs a classifier: {_SUPPORTED}.")


def _digest(*parts: bytes | np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes())
    return h.digest()


# ----------------------------------------------------------------------------------------- xgboost


def _xgboost_forest(model: Any) -> _Forest:
    import xgboost as xgb

    if isinstance(model, xgb.XGBModel):
        if not isinstance(model, xgb.XGBClassifier):
            raise _regressor_error(model)
        _require_fitted(model)
        booster = model.get_booster()
        best = _xgb_best_iteration(booster)
        if best is not None:
            booster = booster[: best + 1]
    elif isinstance(model, xgb.Booster):
        booster = model
    else:
        raise ModelError(f"`model` of type {type(model).__name__} is not supported; pass one of: {_SUPPORTED}.")

    config = json.loads(booster.save_config())["learner"]
    objective = config["objective"]["name"]
    if objective not in _XGB_OBJECTIVES:
        kind = "a regression or ranking" if objective.split(":")[0] in ("reg", "rank", "count", "survival") else "an unsupported"
        raise ModelError(
            f"the xgboost model has {kind} objective {objective!r}; TreeEnsemble supports {_XGB_OBJECTIVES} "
            "(binary: logit head, multi-class: softmax head)."
        )
    dump = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    if dump["name"] not in ("gbtree", "dart"):
        raise ModelError(f"the xgboost booster is {dump['name']!r}; only tree boosters (gbtree, dart) have trees.")
    trees_dump = (dump["gbtree"] if dump["name"] == "dart" else dump)["model"]
    trees = trees_dump["trees"]
    if not trees:
        raise ModelError("the xgboost model has no trees; train it for at least one round.")
    if int(config["learner_model_param"].get("num_target", "1")) > 1 or any(
        int(t["tree_param"].get("size_leaf_vector", "1")) > 1 for t in trees
    ):
        raise ModelError(
            "the xgboost model has vector-leaf (multi_strategy='multi_output_tree') trees; "
            "train with the default one-output-per-tree strategy."
        )
    n_classes = int(config["learner_model_param"]["num_class"])
    n_outputs = n_classes if objective.startswith("multi:") else 1
    scale = np.asarray(dump.get("weight_drop", np.ones(len(trees))), dtype=np.float64)
    # A leaf's value is stored in split_conditions (float32); DART scales tree m by weight_drop[m].
    node_values = [np.asarray(t["split_conditions"], dtype=np.float32).astype(np.float64) * s for t, s in zip(trees, scale)]
    is_leaf = [np.asarray(t["left_children"]) == -1 for t in trees]
    base_margin = _xgb_base_margin(config["learner_model_param"]["base_score"], objective, n_outputs)
    n_columns = booster.num_features()

    def leaf_ids(X: Any) -> np.ndarray:
        return booster.predict(_xgb_dmatrix(xgb, booster, X), pred_leaf=True)

    forest = _Forest(
        kind="xgboost",
        n_outputs=n_outputs,
        n_columns=n_columns,
        node_values=node_values,
        is_leaf=is_leaf,
        tree_class=np.asarray(trees_dump["tree_info"], dtype=np.int64),
        base_margin=base_margin,
        leaf_ids=leaf_ids,
        refusals=(ValueError, TypeError, xgb.core.XGBoostError),
        digest=_digest(bytes(booster.save_raw("ubj"))),
    )
    _xgb_check_base_margin(xgb, booster, forest)
    return forest


def _xgb_best_iteration(booster: Any) -> int | None:
    """Early-stopped sklearn wrappers predict with trees up to ``best_iteration`` only."""
    value = booster.attr("best_iteration")
    return None if value is None else int(value)


def _xgb_base_margin(base_score: str, objective: str, n_outputs: int) -> np.ndarray:
    """xgboost ≥ 3 stores ``base_score`` as a vector string such as ``'[6.274165E-1]'``, in the
    objective's output space: a probability for ``binary:logistic`` (margin = logit), a margin for
    ``binary:logitraw`` and the ``multi:*`` objectives."""
    values = np.array([float(v) for v in base_score.strip("[]").split(",")], dtype=np.float32)
    values = np.broadcast_to(values, (n_outputs,)).astype(np.float64)
    if objective == "binary:logistic":
        values = np.log(values) - np.log1p(-values)
    return values


def _xgb_dmatrix(xgb: Any, booster: Any, X: Any) -> Any:
    if isinstance(X, np.ndarray):
        return xgb.DMatrix(X, feature_names=booster.feature_names, feature_types=booster.feature_types, enable_categorical=True)
    return xgb.DMatrix(X, enable_categorical=True)


def _xgb_check_base_margin(xgb: Any, booster: Any, forest: _Forest) -> None:
    """Guard against a change of xgboost's ``base_score`` format: on one all-missing row, the
    booster's margin must equal the base margin plus the looked-up leaf values."""
    probe = np.full((1, forest.n_columns), np.nan)
    margin = np.asarray(booster.predict(_xgb_dmatrix(xgb, booster, probe), output_margin=True), dtype=np.float64).reshape(-1)
    ids = np.asarray(forest.leaf_ids(probe)).reshape(-1).astype(np.int64)
    values = np.array([v[i] for v, i in zip(forest.node_values, ids)])
    ours = forest.base_margin + np.bincount(forest.tree_class, weights=values, minlength=forest.n_outputs)
    if not np.allclose(ours, margin, rtol=1e-5, atol=1e-5):
        raise ModelError(
            f"could not reproduce the xgboost margin from its dump (got {ours}, booster says {margin}); "
            "this xgboost version stores base_score or leaf values differently than expected."
        )


# ---------------------------------------------------------------------------------------- lightgbm


def _lightgbm_forest(model: Any) -> _Forest:
    import lightgbm as lgb

    if isinstance(model, lgb.LGBMModel):
        if not isinstance(model, lgb.LGBMClassifier):
            raise _regressor_error(model)
        _require_fitted(model)
        booster = model.booster_
    elif isinstance(model, lgb.Booster):
        booster = model
    else:
        raise ModelError(f"`model` of type {type(model).__name__} is not supported; pass one of: {_SUPPORTED}.")

    n_iter = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    if n_iter == 0:
        raise ModelError("the lightgbm model has no trees; train it for at least one round.")
    # The text model (what lightgbm saves) has everything needed and parses ~10x faster than dump_model's JSON.
    model_text = booster.model_to_string(num_iteration=n_iter)
    header, leaf_values = _lgb_parse_text(model_text)
    objective, *options = header.get("objective", "").split()
    if objective not in _LGB_OBJECTIVES:
        raise ModelError(
            f"the lightgbm model has objective {objective!r}; TreeEnsemble supports {_LGB_OBJECTIVES} "
            "(binary: logit head, multiclass: softmax head). Regression, ranking, one-vs-all and custom objectives are refused."
        )
    if objective == "binary" and "sigmoid:1" not in options:
        raise ModelError(f"the lightgbm binary model uses {options}; only sigmoid:1 makes the raw score the log-odds.")
    if "is_linear=1" in model_text:
        raise ModelError("the lightgbm model has linear trees (linear_tree=True); their leaf outputs depend on x.")
    per_iteration = int(header["num_tree_per_iteration"])
    averaged = "average_output" in header
    # boosting="rf" averages its trees: predict_proba is σ(Σ f_m / n_iter), but lightgbm 4.7's
    # raw_score returns the unaveraged sum. The head gives the averaged (true log-odds) margin.
    scale = 1.0 / n_iter if averaged else 1.0
    node_values = [values * scale for values in leaf_values]

    def leaf_ids(X: Any) -> np.ndarray:
        return booster.predict(X, pred_leaf=True, num_iteration=n_iter)

    return _Forest(
        kind="lightgbm",
        n_outputs=per_iteration if objective == "multiclass" else 1,
        n_columns=booster.num_feature(),
        node_values=node_values,
        is_leaf=[np.ones(len(v), dtype=bool) for v in node_values],
        tree_class=np.arange(len(node_values), dtype=np.int64) % per_iteration,
        base_margin=np.zeros(per_iteration if objective == "multiclass" else 1),
        leaf_ids=leaf_ids,
        refusals=(ValueError, TypeError, lgb.basic.LightGBMError),
        digest=_digest(model_text.encode()),
        averaged=averaged,
    )


def _lgb_parse_text(text: str) -> tuple[dict[str, str], list[np.ndarray]]:
    """The header ``key=value`` lines (a bare key maps to ``""``) and each tree's ``leaf_value`` array.

    ``leaf_value`` lists the leaves by leaf index, which is what ``pred_leaf`` returns.
    """
    head, _, body = text.partition("\nTree=")
    header = {}
    for line in head.splitlines():
        key, _, value = line.partition("=")
        header[key.strip()] = value.strip()
    trees = []
    for block in ("Tree=" + body).split("\nTree=")[: None]:
        for line in block.splitlines():
            if line.startswith("leaf_value="):
                trees.append(np.array(line[len("leaf_value="):].split(), dtype=np.float64))
                break
    return header, trees


# ----------------------------------------------------------------------------------------- sklearn


def _sklearn_gb_forest(model: Any) -> _Forest:
    _require_fitted(model)
    if model.loss != "log_loss":
        raise ModelError(
            f"the GradientBoostingClassifier uses loss={model.loss!r}, whose probability is not σ/softmax of "
            "the raw margin; refit with loss='log_loss'."
        )
    init = model.init_
    if init != "zero" and type(init).__name__ != "DummyClassifier":
        raise ModelError(
            f"the GradientBoostingClassifier's init estimator ({type(init).__name__}) makes the base margin depend "
            "on x; refit with init=None (the class prior) or init='zero'."
        )
    n_columns = int(model.n_features_in_)
    base_margin = np.asarray(model._raw_predict_init(np.zeros((1, n_columns), dtype=np.float32)), dtype=np.float64)[0]
    trees = [est.tree_ for est in model.estimators_.ravel()]
    n_outputs = model.estimators_.shape[1]

    def leaf_ids(X: Any) -> np.ndarray:
        return model.apply(X).reshape(X.shape[0], -1)

    return _Forest(
        kind="sklearn-gb",
        n_outputs=n_outputs,
        n_columns=n_columns,
        node_values=[t.value[:, 0, 0] * model.learning_rate for t in trees],
        is_leaf=[t.children_left == -1 for t in trees],
        tree_class=np.tile(np.arange(n_outputs), model.estimators_.shape[0]),
        base_margin=base_margin,
        leaf_ids=leaf_ids,
        refusals=(ValueError, TypeError),
        digest=_digest(base_margin, *[a for t in trees for a in (t.feature, t.threshold, t.children_left, t.value)]),
    )


def _sklearn_hgb_forest(model: Any) -> _Forest:
    """HistGradientBoostingClassifier has no ``apply``: its leaf index comes from a copy of each tree
    predictor whose node values are the node numbers (exact in float64). Uses the same private
    preprocessing (``_preprocess_X``, categorical bitsets) as the model's ``_raw_predict``."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    _require_fitted(model)
    predictors = [p for iteration in model._predictors for p in iteration]
    id_predictors = []
    for p in predictors:
        nodes = p.nodes.copy()
        nodes["value"] = np.arange(len(nodes), dtype=np.float64)
        id_predictors.append(TreePredictor(nodes, p.binned_left_cat_bitsets, p.raw_left_cat_bitsets))
    n_outputs = int(model.n_trees_per_iteration_)
    base_margin = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)

    def leaf_ids(X: Any) -> np.ndarray:
        binned = model._preprocess_X(X, reset=False)
        known_cat_bitsets, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
        n_threads = _openmp_effective_n_threads()
        return np.column_stack([p.predict(binned, known_cat_bitsets, f_idx_map, n_threads) for p in id_predictors])

    return _Forest(
        kind="sklearn-hgb",
        n_outputs=n_outputs,
        n_columns=int(model.n_features_in_),
        node_values=[p.nodes["value"].astype(np.float64) for p in predictors],
        is_leaf=[p.nodes["is_leaf"].astype(bool) for p in predictors],
        tree_class=np.tile(np.arange(n_outputs), len(model._predictors)),
        base_margin=base_margin,
        leaf_ids=leaf_ids,
        refusals=(ValueError, TypeError),
        digest=_digest(base_margin, *[a for p in predictors for a in (p.nodes, p.raw_left_cat_bitsets)]),
    )
