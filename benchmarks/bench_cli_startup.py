"""Start-up of the command line: ``representer --help`` against importing the package and torch.

    python benchmarks/bench_cli_startup.py [--repeats 5]

Each command runs ``repeats`` times, interleaved so that the machine's load weighs on all alike;
the table gives the best wall time and the best CPU time (user + system) of the child process. CPU
time barely moves with other load, which is why ``tests/test_cli_startup.py`` compares it.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path


def run_once(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    script = str(Path(sys.executable).parent / "representer")
    commands = {
        "python -c 'import representer'": [sys.executable, "-c", "import representer"],
        "representer --help": [script, "--help"],
        "python -m representer --help": [sys.executable, "-m", "representer", "--help"],
        "representer fit --help": [script, "fit", "--help"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    best = {name: (float("inf"), float("inf")) for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            wall, cpu = run_once(command)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    print(f"| command | wall s (best of {args.repeats}) | CPU s |\n|---|---:|---:|")
    for name, (wall, cpu) in best.items():
        print(f"| `{name}` | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
