"""The ``representer`` command (needs the ``cli`` extra: typer and rich).

Only the command line lives here: the typer commands, the parsing of command-line text, the spinner
and the printing. The run folder that ``fit`` writes and ``explain`` / ``debug`` / ``report`` read
(its layout, opening it, writing its report) is :mod:`representer.userrun`; the explainers' options
on the command line (generated from their signatures, constraint tables and docstrings) are
:mod:`representer._cli_options`.

Every failure is printed as one line, ``error: …``, with exit code 1: a
:class:`~representer.errors.RepresenterError` with its message (the file, the problem, the fix),
anything else with its type and "run with --debug for the traceback" (``representer --debug …``
shows it). Warnings of degenerate input are printed as ``warning: …`` lines. Text that comes from
the user (paths, class names, item names, messages quoting them) is printed with rich markup
escaped.

Start-up: this module imports only typer, rich and the light modules of the package (no numpy, no
torch), so ``representer --help`` answers at once; each command imports what it needs when it runs
(tests/test_cli_startup.py holds it to that).
A new command is a function decorated with ``@app.command(cls=Command)`` below the others.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from ._cli_options import METHODS, ROUTES, method_options, method_params, option_flag, option_help
from .errors import InputError, RepresenterError, RepresenterWarning

if TYPE_CHECKING:
    import numpy as np


class Command(TyperCommand):
    """A command whose ``--help`` lists its options in sections (their ``rich_help_panel``), in plain text.

    The app uses typer's plain (click) help rather than its rich panels: rendering those imports
    rich's Markdown support, which alone doubles the start-up of ``representer --help``.
    """

    def sections(self, ctx: Any) -> dict[str, list[Any]]:
        """The parameters shown by ``--help`` by section: "Arguments", "Options", then each help panel in order."""
        sections: dict[str, list[Any]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            if param.get_help_record(ctx) is not None:
                title = "Arguments" if param.param_type_name == "argument" else getattr(param, "rich_help_panel", None) or "Options"
                sections.setdefault(title, []).append(param)
        return {title: params for title, params in sections.items() if params}

    def format_options(self, ctx: Any, formatter: Any) -> None:
        for title, params in self.sections(ctx).items():
            with formatter.section(title):
                formatter.write_dl([param.get_help_record(ctx) for param in params])


app = typer.Typer(
    rich_markup_mode=None,
    help="representer: which training examples made a classifier predict this, and which training labels are wrong.",
    no_args_is_help=True,
    add_completion=False,
)


class _Console:
    """rich's console, made on first use: ``--help`` does not import rich."""

    _console: Any = None

    def __getattr__(self, name: str) -> Any:
        if _Console._console is None:
            from rich.console import Console

            _Console._console = Console()
        return getattr(_Console._console, name)


def escape(text: str) -> str:
    """``text`` with rich markup escaped (for text that comes from the user)."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def _table(title: str) -> Any:
    from rich.table import Table

    return Table(title=title)


console = _Console()
_settings = {"debug": False}
_PACKAGE = Path(__file__).resolve().parent


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an unexpected error.")] = False,
) -> None:
    """representer: which training examples made a classifier predict this, and which training labels are wrong."""
    _settings["debug"] = debug


class _StepPrinter:
    """Shows the running step with a spinner and prints each finished step with its duration.

    The library's progress bars report to :meth:`advance` (:func:`representer._progress.reporting`),
    which shows their count beside the step.
    """

    def __init__(self, status) -> None:
        self.status = status
        self.current: str | None = None
        self.started = 0.0

    def __call__(self, message: str) -> None:
        self.finish()
        self.current, self.started = escape(message), time.perf_counter()
        self.status.update(f"{self.current} …")

    def advance(self, desc: str, done: int, total: int | None) -> None:
        """One more unit of a long step within the current one: ``features 12/40``."""
        if self.current is not None:
            self.status.update(f"{self.current} … {escape(desc)} {done}{'' if total is None else f'/{total}'}")

    def finish(self) -> None:
        if self.current is not None:
            console.print(f"[green]✓[/green] {self.current} [dim]({time.perf_counter() - self.started:.1f} s)[/dim]")
            self.current = None


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Every error is printed as one line, ``error: …``, and exits with code 1; warnings as ``warning: …``.

    A RepresenterError prints its message; anything else its type and message and a hint to rerun
    with ``--debug``, which re-raises it instead (full traceback).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RepresenterWarning)
        warnings.simplefilter("always", RuntimeWarning)
        try:
            yield
        except RepresenterError as exc:
            _print_error(str(exc))
            raise typer.Exit(code=1) from exc
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # the one place that turns an unexpected error into one line
            if _settings["debug"]:
                raise
            _print_error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
            raise typer.Exit(code=1) from exc
        finally:
            for warning in caught:
                if issubclass(warning.category, RepresenterWarning) or (
                    issubclass(warning.category, RuntimeWarning) and Path(warning.filename).is_relative_to(_PACKAGE)
                ):
                    console.print(f"[yellow]warning:[/yellow] {escape(' '.join(str(warning.message).split()))}", soft_wrap=True)


def _print_error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", soft_wrap=True)


@contextmanager
def _working() -> Iterator[_StepPrinter]:
    """A spinner with finished steps, inside :func:`_reported_errors`."""
    from ._progress import reporting

    with console.status("Starting …") as status, _reported_errors():
        steps = _StepPrinter(status)
        with reporting(steps.advance):
            yield steps
        steps.finish()


def _print_outputs(outputs: dict[str, str], started: float | None = None) -> None:
    """One line per output, ``label: text`` with the texts aligned, then the time since ``started``.

    ``text`` is rich markup: escape what comes from the user (:func:`_path`).
    """
    width = max(map(len, outputs)) + 1
    for label, text in outputs.items():
        console.print(f"{label + ':':<{width}} {text}", soft_wrap=True)
    if started is not None:
        console.print(f"[dim]Done in {time.perf_counter() - started:.1f} s.[/dim]")


def _path(path: Path) -> str:
    """``path`` made absolute, escaped and in bold, for :func:`_print_outputs`."""
    return f"[bold]{escape(str(path.resolve()))}[/bold]"


@app.command(cls=Command)
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and summary.json.")] = Path("representer-demo"),
    seed: Annotated[int, typer.Option(help="Seed of the label flips, the subsample and the training.")] = 0,
    flip: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of training labels to flip.")] = 0.1,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (default 6; 1 with --quick).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="600 training / 200 test images and 1 epoch (seconds).")] = False,
) -> None:
    """Flip labels in Fashion-MNIST, train a small CNN, explain it with RPS-L2, and find the flipped labels."""
    from .demo import run_demo

    started = time.perf_counter()
    with _working() as steps:
        result = run_demo(out, seed=seed, flip=flip, epochs=epochs, quick=quick, on_step=steps)
    summary = result.summary
    acc = summary["accuracy"]["test"]
    pearson = summary["fidelity"]["test"]["pearson"]
    console.print(
        f"\nSmallCNN test accuracy [bold]{100 * acc:.1f} %[/bold]; RPS-L2 reproduces its test probabilities "
        f"with Pearson r = [bold]{pearson:.4f}[/bold]."
    )
    table = _table(f"Flipped labels found ({summary['n_flipped']} of {summary['n_train']} flipped)")
    table.add_column("ranking", no_wrap=True)
    checkpoints = list(next(iter(summary["detection"].values()))["found_at"])
    for f in checkpoints:
        table.add_column(f"{100 * float(f):.0f} % inspected", justify="right")
    for name, row in summary["detection"].items():
        table.add_row(name, *(f"{100 * row['found_at'][f]:.1f} %" for f in checkpoints))
    console.print(table)
    _print_outputs({"Report": _path(result.report), "Summary": escape(str(result.summary_path.resolve()))}, started)


@app.command(cls=Command)
def bench(
    suite: Annotated[str, typer.Option(help="Benchmark suite: 'dualview' (DualView's Table 2), 'rps' (the RPS paper's §4.1 data debugging over 5 random splits, and RPS-L2's fidelity), 'lje' (the RPS-LJE paper's German Credit data debugging with XGBoost; ignores --dataset, --methods, --cache-dir), 'relatif' (RelatIF Table 1, kNN overlap) or 'all' (each into OUT/<suite>).")] = "dualview",
    dataset: Annotated[str, typer.Option(help="fashion_mnist_subset | mnist_subset | digits | fashion_mnist.")] = "fashion_mnist_subset",
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated subset of DV,IF,RPS-L2,RPS-LJE,RelatIF,SIM,SIM-rp,kNN,RAND,CL for the dualview suite (default: all).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, table.md and table2.png.")] = Path("representer-bench"),
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized: dualview 1,000 train / 300 test and 4 epochs; lje 2 repeats; each suite under a minute.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the subsample, the training, DualView and the random baseline.")] = 0,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache trained models here (safetensors).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    network: Annotated[str, typer.Option(help="dualview suite: small_cnn (Adam, 15 epochs) or basic_conv (the paper's MNIST network and SGD recipe, 10 epochs).")] = "small_cnn",
    dualview_c: Annotated[float | None, typer.Option("--dualview-c", help="dualview suite: DV's C (Shark convention; default: DualView's, 12 / n; the paper used 0.001 at 60,000 images).")] = None,
    n_test: Annotated[int | None, typer.Option("--n-test", help="dualview suite: score a seeded subset of this many test points (default: all; the paper scored 4,000).")] = None,
) -> None:
    """Run an evaluation suite end to end and print its table with a legend (written to OUT/table.md)."""
    from ._atomic import write_text
    from ._bench_legend import annotate
    from .evaluation.benchmark import METHODS as BENCH_METHODS, run_suite

    chosen = tuple(BENCH_METHODS) if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip())
    with _reported_errors():
        result = run_suite(
            suite, dataset, chosen, out, quick=quick, seed=seed, cache_dir=cache_dir, show_progress=progress,
            network=network, dualview_C=dualview_c, n_test=n_test,
        )
        tables, legend = annotate((out / "table.md").read_text())
        text = tables + "\nLegend (↑ higher is better, ↓ lower is better):\n\n" + "".join(f"* {line}\n" for line in legend)
        write_text(out / "table.md", text)
    console.print(text, markup=False, soft_wrap=True)
    _print_outputs({"Results": f"{_path(out)} [dim]({result['seconds']:.0f} s)[/dim]"})


# ====================================================================== a user's own model and data
# (the run folder itself: representer.userrun)


def _parse_indices(text: str | None, n: int, split: str) -> np.ndarray:
    import numpy as np

    if text is None:
        return np.arange(n, dtype=np.int64)
    try:
        rows = np.array([int(v) for v in text.split(",") if v.strip()], dtype=np.int64)
    except ValueError as exc:
        raise InputError(f"`--test-indices` must be comma-separated integers such as 0,5,7; got {text!r}.") from exc
    bad = rows[(rows < 0) | (rows >= n)]
    if rows.size == 0 or bad.size:
        raise InputError(f"`--test-indices` must be in [0, {n - 1}] (the {split} split has {n} points); got {text!r}.")
    return rows


def _target(text: str) -> Any:
    """'predicted', 'label', a class number, or a class name (checked by the explainer)."""
    try:
        return int(text)
    except ValueError:
        return text


def _class_names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise InputError(f"`--class-names` must be comma-separated names such as cat,dog,eel; got {text!r}.")
    return names


_KINDS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
METHOD_PANEL = "Method options (each says which methods take it)"


def _with_method_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` (which takes ``**method_options``) one option per explainer hyper-parameter.

    The options come from :func:`representer._cli_options.method_options`: name, type and, per
    method, help and default, all read from the explainers. Each defaults to ``None`` (not set), so
    that ``fit`` passes only what was given and refuses an option of another method.
    """
    signature = inspect.signature(command, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    generated = []
    for name, entry in method_options().items():
        flag = option_flag(name)
        kind = _KINDS[entry["kind"]]
        flags = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag, *([flag.lower()] if flag != flag.lower() else [])]
        info = typer.Option(*flags, help=option_help(entry), rich_help_panel=METHOD_PANEL, show_default=False)
        generated.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, info]))
    command.__signature__ = signature.replace(parameters=[*fixed, *generated])  # type: ignore[attr-defined]
    return command


MODEL_PANEL, DATA_PANEL = "The model", "The data"


@app.command(cls=Command)
@_with_method_options
def fit(
    model: Annotated[str, typer.Option(help="PyTorch entry point package.module:build_model or path/to/file.py:build_model (a function with no arguments returning an nn.Module), or a tree model file: XGBoost .json / .ubj, LightGBM .txt.", rich_help_panel=MODEL_PANEL)],
    data: Annotated[Path, typer.Option(help="Training data: .npz, .npy (with --labels), .csv / .parquet (with --label-column) or a folder of images (root/<class>/*.png, or root/train/<class>/ and root/test/<class>/).", rich_help_panel=DATA_PANEL)],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write (explainer, run.json): new, empty, or a previous run.")] = Path("representer-run"),
    method: Annotated[str, typer.Option(help=f"Explainer: {' | '.join(METHODS)}.")] = "rps-l2",
    weights: Annotated[Path | None, typer.Option(help="State dict of the network: .safetensors, or a torch.save file read with weights_only=True (a checkpoint dict with the state dict under state_dict / model_state_dict works too); loaded strictly.", rich_help_panel=MODEL_PANEL)] = None,
    head: Annotated[str | None, typer.Option(help="Dotted name of the network's linear head (default: its last nn.Linear; the first forward pass checks it is also the last one applied).", rich_help_panel=MODEL_PANEL)] = None,
    encoder: Annotated[str | None, typer.Option(help="For texts: module:encode, mapping a list of strings to the network's input (token ids, or a dict of arrays).", rich_help_panel=MODEL_PANEL)] = None,
    tree_features: Annotated[str, typer.Option("--tree-features", help="Tree models: 'margins' (one feature per tree) or 'leaves' (one-hot leaves).", rich_help_panel=MODEL_PANEL)] = "margins",
    device: Annotated[str, typer.Option(help="Where the network and the scoring run: cpu, cuda, … (a device this torch cannot use is refused before anything runs).", rich_help_panel=MODEL_PANEL)] = "cpu",
    test_data: Annotated[Path | None, typer.Option("--test-data", help="Test data in the same format as --data.", rich_help_panel=DATA_PANEL)] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels (.npy) of an .npy --data.", rich_help_panel=DATA_PANEL)] = None,
    test_labels: Annotated[Path | None, typer.Option("--test-labels", help="Labels (.npy) of an .npy --test-data.", rich_help_panel=DATA_PANEL)] = None,
    x_key: Annotated[str | None, typer.Option("--x-key", help="Array of inputs in the .npz files (default X_train / X_test).", rich_help_panel=DATA_PANEL)] = None,
    y_key: Annotated[str | None, typer.Option("--y-key", help="Array of labels in the .npz files (default y_train / y_test).", rich_help_panel=DATA_PANEL)] = None,
    label_column: Annotated[str | None, typer.Option("--label-column", help="Label column of a CSV / Parquet table.", rich_help_panel=DATA_PANEL)] = None,
    feature_columns: Annotated[str | None, typer.Option("--feature-columns", help="Comma-separated input columns of a table (default: all but the label; they must be numeric).", rich_help_panel=DATA_PANEL)] = None,
    text_column: Annotated[str | None, typer.Option("--text-column", help="Text column of a CSV / Parquet table of texts.", rich_help_panel=DATA_PANEL)] = None,
    class_names: Annotated[str | None, typer.Option("--class-names", help="Comma-separated name of each class in the order of the model's outputs (default: sorted folder names / labels, if as many as the model's classes).", rich_help_panel=DATA_PANEL)] = None,
    force: Annotated[bool, typer.Option("--force", help="Write the run into an --out folder that holds other files (they are kept).")] = False,
    checkpoints: Annotated[Path | None, typer.Option("--checkpoints", help="Folder of checkpoints recorded while the network trained (rp.CheckpointRecorder): `debug` then ranks labels by the training trajectory.", rich_help_panel=MODEL_PANEL)] = None,
    corrections: Annotated[Path | None, typer.Option("--corrections", help="Corrections file of `representer review RUN --export`: relabel and remove those training points first.", rich_help_panel=DATA_PANEL)] = None,
    **method_options: Any,
) -> None:
    """Fit an explainer on your model and training data, and save it in a run folder."""
    from . import __version__, methods
    from .checkpoints import INDEX_FILE
    from .classes import ClassMapping
    from .userdata import DataSpec, load_data
    from .usermodel import ModelSpec, load_model
    from .userrun import check_out, check_recording, data_fingerprint, flatten, place, write_run

    started = time.perf_counter()
    with _working() as steps:
        class_name, params = method_params(method, method_options)
        check_out(out, force=force)
        explainer = getattr(methods, class_name)(None, device=device, **params)
        explainer.validate_params()
        data_spec = DataSpec(
            path=str(data), test_path=str(test_data) if test_data else None, labels=str(labels) if labels else None,
            test_labels=str(test_labels) if test_labels else None, x_key=x_key, y_key=y_key, label_column=label_column,
            feature_columns=tuple(s.strip() for s in feature_columns.split(",")) if feature_columns else None,
            text_column=text_column, class_names=_class_names(class_names),
        ).resolved()
        model_spec = ModelSpec(str(model), str(weights) if weights else None, head, tree_features, encoder).resolved().with_code()
        model_spec.check_files()
        if checkpoints is not None and not (checkpoints / INDEX_FILE).is_file():
            raise InputError(f"`--checkpoints` {checkpoints} holds no checkpoint recording (no {INDEX_FILE}); record one "
                             "with rp.CheckpointRecorder while the network trains.")
        if corrections is not None and not corrections.is_file():
            raise InputError(f"`--corrections`: the file {corrections} does not exist; write it with `representer review RUN --export`.")
        steps(f"Loading the data ({data.name})")
        user_data = load_data(data_spec)
        steps(f"Loading the model ({Path(model).name})")
        user_model = load_model(model_spec)
        place(user_model, device)
        recording = check_recording(checkpoints, user_model.adapter) if checkpoints is not None else None
        n_classes = user_model.adapter.n_classes
        if user_data.classes is not None:
            user_data.classes.check_classes(n_classes, "the model")
        classes = ClassMapping.class_ids(n_classes) if user_data.classes is None else user_data.classes
        corrected = None
        if corrections is not None:
            from .review.corrections import apply_corrections

            steps(f"Applying the corrections of {corrections.name}")
            user_data, corrected = apply_corrections(corrections, user_data, classes)
        test = user_data.test
        steps(f"Fitting {method} on {len(user_data.train.y)} training points")
        explainer.model = user_model.adapter
        explainer.class_names = None if user_data.classes is None else list(classes.names)
        X_train = user_model.inputs(user_data.train.X)
        if method in ("rps-l2", "rps-lje") and test is not None:
            explainer.fit(X_train, user_data.train.y, eval_X=user_model.inputs(test.X))
        else:
            explainer.fit(X_train, user_data.train.y)
        adapter = explainer.model_
        accuracy = {"train": float((adapter.predict(X_train) == user_data.train.y).mean())}
        if test is not None:
            accuracy["test"] = float((adapter.predict(user_model.inputs(test.X)) == test.y).mean())
        steps(f"Saving the run to {out}")
        info = {
            "representer": __version__,
            "method": method,
            "params": params,
            "device": device,
            "model": model_spec.to_dict(),
            "data": data_spec.to_dict(),
            "kind": user_data.kind,
            "classes": classes.to_dict(),
            "n_train": int(len(user_data.train.y)),
            "n_test": int(len(test.y)) if test is not None else 0,
            "train_fingerprint": data_fingerprint(user_data.train),
            "accuracy": accuracy,
            "checkpoints": recording,
            "corrections": corrected,
        }
        write_run(out, explainer, info, force=force)
    table = _table(f"{method} fitted on {info['n_train']} training points ({info['n_test']} test)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for split, value in accuracy.items():
        table.add_row(f"model accuracy ({split})", f"{100 * value:.1f} %")
    if recording:
        table.add_row("checkpoints (for debug)", f"{len(recording['epochs'])}, epochs {recording['epochs'][0]}–{recording['epochs'][-1]}")
    for name, value in flatten(explainer.fit_report_).items():
        table.add_row(escape(name), f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    console.print(table)
    shown = escape(str(out))
    _print_outputs({"Run": f"{_path(out)}  next: [bold]representer explain {shown}[/bold] or [bold]representer debug {shown}[/bold]"},
                   started)


RunArgument = Annotated[Path, typer.Argument(metavar="RUN", help="Run folder written by `representer fit`.")]
TrustOption = Annotated[
    bool,
    typer.Option("--trust-code", help="Import the model's code even if it is not the code `fit` ran (changed, or elsewhere)."),
]


@app.command(cls=Command)
def explain(
    run: RunArgument,
    test_indices: Annotated[str | None, typer.Option("--test-indices", help="Comma-separated points to explain, e.g. 0,5,7 (default: the whole split).")] = None,
    split: Annotated[str, typer.Option(help="Explain points of the 'test' or the 'train' split.")] = "test",
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Training points kept per sign.")] = 10,
    target: Annotated[str, typer.Option(help="Class explained: 'predicted', 'label' (the point's own label), a class number or a class name.")] = "predicted",
    show: Annotated[int, typer.Option(min=1, help="Explained points drawn in report.html.")] = 6,
    trust_code: TrustOption = False,
) -> None:
    """Explain points with a fitted run: writes explanations.json and report.html into the run folder."""
    import json

    from ._atomic import write_text
    from .userrun import EXPLANATIONS_FILE, class_label, open_run, select_rows, write_report

    started = time.perf_counter()
    with _working() as steps:
        opened = open_run(run, with_model=True, steps=steps, trust_code=trust_code)
        points = opened.data.split(split)
        rows = _parse_indices(test_indices, len(points.y), split)
        steps(f"Explaining {rows.size} {split} point{'s' * (rows.size != 1)} (top {top_k} of each sign)")
        X = opened.model.inputs(select_rows(points.X, rows))
        explanation = opened.explainer.explain(X, top_k=top_k, target=_target(target), y=points.y[rows])
        predicted = opened.explainer.model_.predict(X)
        names, train_items = opened.data.class_names, opened.data.train.items

        def training_points(top: Any, r: int) -> dict[str, list[Any]]:
            indices = top.indices[r].tolist()
            return {"indices": indices, "items": [train_items[i] for i in indices], "scores": top.scores[r].tolist()}

        record = {
            "method": opened.info["method"],
            "split": split,
            "top_k": explanation.meta["top_k"],
            "target": target,
            "show": int(show),
            "sign": "positive = excitatory (raises the explained class); scores are test × train",
            "rows": [
                {
                    "index": int(t), "item": points.items[int(t)], "label": int(points.y[int(t)]),
                    "predicted": int(predicted[r]), "explained_class": int(explanation.target[r]),
                    "explained_class_name": class_label(names, int(explanation.target[r])),
                    "excitatory": training_points(explanation.excitatory, r),
                    "inhibitory": training_points(explanation.inhibitory, r),
                }
                for r, t in enumerate(rows)
            ],
        }
        write_text(run / EXPLANATIONS_FILE, json.dumps(record, indent=2))
        steps("Writing the HTML report")
        report = write_report(opened)
    first = record["rows"][0]
    console.print(
        f"{split} point {first['index']} ({first['item']}), explained class {first['explained_class']}"
        f"{' · ' + first['explained_class_name'] if first['explained_class_name'] else ''}: most excitatory training points "
        f"{_listed(first['excitatory'])}; most inhibitory {_listed(first['inhibitory'])}",
        markup=False,
    )
    _print_outputs({"Explanations": _path(run / EXPLANATIONS_FILE), "Report": _path(report)}, started)


def _listed(points: dict[str, list[Any]], n: int = 3) -> str:
    """The first ``n`` training points of an explanation as ``index (item)``."""
    return ", ".join(f"{i} ({item})" for i, item in zip(points["indices"][:n], points["items"][:n]))


@app.command(cls=Command)
def debug(
    run: RunArgument,
    method: Annotated[str, typer.Option(help=f"How to rank: 'auto' (the route validated for this model, docs/label_issues.md: over the checkpoints recorded with fit --checkpoints, the loss on the given label if the network memorised its labels, else the area under the margin; over a booster's rounds, the loss; without either, cross-fitting of the head), a route ({', '.join(ROUTES)}), or 'explainer' (the fitted explainer's own score, see --ranking).")] = "auto",
    ranking: Annotated[str, typer.Option(help="With --method explainer: 'self-influence' (the method's own per-point score) or 'cumulative' (DualView's Σ_t |a(t,i)| / max_j |a(t,j)| over the test split; implies --method explainer).")] = "self-influence",
    top: Annotated[int | None, typer.Option(min=1, help="Keep the TOP most suspicious points in the JSON / CSV (default: all).")] = None,
    show: Annotated[int, typer.Option(min=1, help="Suspicious points drawn in report.html.")] = 24,
    trust_code: TrustOption = False,
) -> None:
    """Rank training labels by suspicion: writes label_issues.json, label_issues.csv and report.html."""
    import csv
    import json

    from ._atomic import atomic_open, write_text
    from .debugging import find_label_issues
    from .models import predicted_class
    from .userrun import ISSUES_CSV, ISSUES_FILE, class_label, open_run, recorded_checkpoints, write_report

    started = time.perf_counter()
    chosen = ranking.replace("-", "_")
    if chosen != "self_influence" and method == "auto":
        method = "explainer"
    with _working() as steps:
        if method not in ("auto", "explainer", *ROUTES):
            raise InputError(f"`--method` must be auto, explainer or one of {', '.join(ROUTES)}; got {method!r}.")
        opened = open_run(run, with_model=True, steps=steps, trust_code=trust_code)
        explainer = opened.explainer
        if method == "explainer":
            steps(f"Ranking {explainer.n_train_} training labels by {opened.info['method']} {ranking}")
            X_test = opened.model.inputs(opened.data.split("test").X) if chosen == "cumulative" else None
            issues = find_label_issues(explainer, ranking=chosen, X_test=X_test, top=top)  # type: ignore[arg-type]
        else:
            recording = recorded_checkpoints(opened)
            steps(f"Ranking {explainer.n_train_} training labels ({method}"
                  + (f", {len(recording['epochs'])} checkpoints)" if recording else ")"))
            issues = find_label_issues(opened.model.adapter, opened.model.inputs(opened.data.train.X), opened.data.train.y,
                                       checkpoints=recording["path"] if recording else None, method=method, top=top)
        predicted = predicted_class(explainer.model_.logits_from_features(explainer.train_features_))
        names, items = opened.data.class_names, opened.data.train.items
        rows = [
            {
                "rank": r + 1, "train_index": int(i), "item": items[int(i)], "score": float(s),
                "given_label": int(g), "given_class": class_label(names, int(g)),
                "predicted": int(predicted[int(i)]), "predicted_class": class_label(names, int(predicted[int(i)])),
            }
            for r, (i, s, g) in enumerate(zip(issues.indices, issues.scores, issues.given_labels))
        ]
        record = {"method": opened.info["method"], "ranking": issues.ranking, "route": issues.method,
                  "reason": issues.reason, "caveat": issues.caveat, "n_train": explainer.n_train_,
                  "show": int(show), "issues": rows}
        write_text(run / ISSUES_FILE, json.dumps(record, indent=2))
        with atomic_open(run / ISSUES_CSV, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        steps("Writing the HTML report")
        report = write_report(opened)
    console.print(f"Ranked by [bold]{escape(issues.method)}[/bold]: {escape(issues.reason)}.", soft_wrap=True)
    if issues.caveat:
        console.print(f"[yellow]caveat:[/yellow] {escape(issues.caveat)}.", soft_wrap=True)
    table = _table(f"Most suspicious training labels ({escape(issues.method)})")
    for column in ("rank", "train index", "item", "given", "model", "score"):
        table.add_column(column, justify="right" if column in ("rank", "train index", "score") else "left")
    for row in rows[:10]:
        table.add_row(str(row["rank"]), str(row["train_index"]), escape(row["item"]), escape(row["given_class"] or str(row["given_label"])),
                      escape(row["predicted_class"] or str(row["predicted"])), f"{row['score']:.4g}")
    console.print(table)
    _print_outputs({"Label issues": f"{_path(run / ISSUES_CSV)} (and .json)", "Report": _path(report)}, started)


@app.command(cls=Command)
def report(
    run: RunArgument,
    show_explanations: Annotated[int | None, typer.Option("--show-explanations", min=1, help="Explained points drawn (default: as chosen by explain).")] = None,
    show_issues: Annotated[int | None, typer.Option("--show-issues", min=1, help="Suspicious points drawn (default: as chosen by debug).")] = None,
) -> None:
    """Rebuild report.html from a run folder's saved explanations and label issues (no model needed)."""
    from .userrun import open_run, write_report

    with _working() as steps:
        opened = open_run(run, with_model=False, steps=steps)
        steps("Writing the HTML report")
        path = write_report(opened, show_explanations=show_explanations, show_issues=show_issues)
    _print_outputs({"Report": _path(path)})


@app.command(cls=Command)
def review(
    run: RunArgument,
    host: Annotated[str, typer.Option(help="Address the app listens on (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port the app listens on (0: a free port).")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the URL (with its session token) without opening a browser.")] = False,
    export: Annotated[Path | None, typer.Option("--export", help="Write the current keep / relabel / remove decisions as a corrections file (for `fit --corrections`) and stop: no server, no model loaded.")] = None,
    train: Annotated[str | None, typer.Option("--train", help="Retrain on the given vs the corrected labels and stop: module:function / file.py:function taking (X, y) (or (X, y, seed=…)) and returning a fitted model, or 'zoo' (the run's build_model() trained by representer.zoo.train_classifier); writes retrain.json and report.html.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="With --train zoo: training epochs.")] = 10,
    seed: Annotated[int, typer.Option(help="With --train: the seed of both trainings.")] = 0,
    trust_code: TrustOption = False,
) -> None:
    """Review the suspicious labels `debug` ranked in a local web app; export the decisions; retrain with them."""
    from .review import open_review, write_corrections
    from .userrun import RETRAIN_FILE, write_report

    started = time.perf_counter()
    with _working() as steps:
        opened = open_review(run, with_model=export is None or train is not None, trust_code=trust_code, steps=steps)
        if export is not None:
            fixes = opened.corrections()
            write_corrections(export, fixes)
        if train is not None:
            from .review.retrain import retrain_comparison

            record = retrain_comparison(opened, train, seed=seed, epochs=epochs, steps=steps)
            steps("Writing the HTML report")
            report_path = write_report(opened.run)
    if export is not None:
        _print_outputs({"Corrections": f"{_path(export)} ({fixes.n_relabel} relabelled, {fixes.n_remove} removed, "
                                      f"{len(fixes.rows) - fixes.n_relabel - fixes.n_remove} kept)  next: [bold]representer fit … --corrections {escape(str(export))}[/bold]"})
    if train is not None:
        table = _table(f"Retrained by {escape(train)} (seed {seed}) on {record['n_test']} test points")
        for column in ("training labels", "points", "test accuracy"):
            table.add_column(column, justify="left" if column == "training labels" else "right")
        table.add_row("as given", str(record["before"]["n_train"]), f"{100 * record['before']['test_accuracy']:.2f} %")
        table.add_row(f"corrected ({record['relabelled']} relabelled, {record['removed']} removed)", str(record["after"]["n_train"]),
                      f"{100 * record['after']['test_accuracy']:.2f} %")
        console.print(table)
        _print_outputs({"Comparison": _path(run / RETRAIN_FILE), "Report": _path(report_path)}, started)
    if export is None and train is None:
        from .review.server import serve

        progress = opened.progress()
        console.print(f"Reviewing {progress['total']} ranked training labels of {_path(run)} ({progress['reviewed']} reviewed so far); "
                      "decisions are saved in review.sqlite. Stop with Ctrl-C.", soft_wrap=True)
        with _reported_errors():
            serve(opened, host=host, port=port, open_browser=not no_browser,
                  on_ready=lambda url: console.print(f"Open [bold]{escape(url)}[/bold]", soft_wrap=True))
