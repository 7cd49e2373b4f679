"""``python -m representer``: the ``representer`` command."""

from .cli import app

app(prog_name="representer")
