"""docs/api.md is generated from the code and must be current; every public name is documented."""

from pathlib import Path

import representer as rp

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_name_is_documented(tool):
    assert set(rp.__all__) == tool("gen_api_docs").documented_names()


def test_api_reference_is_current(tool):
    assert (ROOT / "docs" / "api.md").read_text() == tool("gen_api_docs").render(), "run `python tools/gen_api_docs.py`"
