"""The ``representer`` command (needs the ``cli`` extra: typer and rich)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import RepresenterError

app = typer.Typer(
    help="representer: which training examples made a classifier predict this, and which training labels are wrong.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def main() -> None:
    """representer: which training examples made a classifier predict this, and which training labels are wrong."""


class _StepPrinter:
    """Shows the running step with a spinner and prints each finished step with its duration."""

    def __init__(self, status) -> None:
        self.status = status
        self.current: str | None = None
        self.started = 0.0

    def __call__(self, message: str) -> None:
        self.finish()
        self.current, self.started = message, time.perf_counter()
        self.status.update(f"{message} …")

    def finish(self) -> None:
        if self.current is not None:
            console.print(f"[green]✓[/green] {self.current} [dim]({time.perf_counter() - self.started:.1f} s)[/dim]")
            self.current = None


@app.command()
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
    with console.status("Starting …") as status:
        steps = _StepPrinter(status)
        try:
            result = run_demo(out, seed=seed, flip=flip, epochs=epochs, quick=quick, on_step=steps)
        except RepresenterError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(code=1) from exc
        steps.finish()
    summary = result.summary
    acc = summary["accuracy"]["test"]
    pearson = summary["fidelity"]["test"]["pearson"]
    console.print(
        f"\nSmallCNN test accuracy [bold]{100 * acc:.1f} %[/bold]; RPS-L2 reproduces its test probabilities "
        f"with Pearson r = [bold]{pearson:.4f}[/bold]."
    )
    table = Table(title=f"Flipped labels found ({summary['n_flipped']} of {summary['n_train']} flipped)")
    table.add_column("ranking", no_wrap=True)
    checkpoints = list(next(iter(summary["detection"].values()))["found_at"])
    for f in checkpoints:
        table.add_column(f"{100 * float(f):.0f} % inspected", justify="right")
    for name, row in summary["detection"].items():
        table.add_row(name, *(f"{100 * row['found_at'][f]:.1f} %" for f in checkpoints))
    console.print(table)
    console.print(f"Report:  [bold]{result.report.resolve()}[/bold]", soft_wrap=True)
    console.print(f"Summary: {result.summary_path.resolve()}", soft_wrap=True)
    console.print(f"[dim]Done in {time.perf_counter() - started:.1f} s.[/dim]")


@app.command()
def bench(
    suite: Annotated[str, typer.Option(help="Benchmark suite: 'dualview' (DualView's Table 2).")] = "dualview",
    dataset: Annotated[str, typer.Option(help="fashion_mnist_subset | mnist_subset | digits | fashion_mnist.")] = "fashion_mnist_subset",
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated subset of DV,IF,RPS-L2,RPS-LJE,RelatIF,SIM,kNN,RAND,CL (default: all).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for results.json, table.md and table2.png.")] = Path("representer-bench"),
    quick: Annotated[bool, typer.Option("--quick", help="1,000 training / 300 test points and 4 epochs (about a minute).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the subsample, the training, DualView and the random baseline.")] = 0,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache trained models here (safetensors).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Run an evaluation suite end to end and print its table (written to OUT/table.md)."""
    from .evaluation.benchmark import METHODS, run_suite

    chosen = tuple(METHODS) if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip())
    try:
        result = run_suite(
            suite, dataset, chosen, out, quick=quick, seed=seed, cache_dir=cache_dir, show_progress=progress
        )
    except RepresenterError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=1) from exc
    console.print((out / "table.md").read_text(), markup=False, soft_wrap=True)
    console.print(f"Results: [bold]{out.resolve()}[/bold] [dim]({result['seconds']:.0f} s)[/dim]", soft_wrap=True)
