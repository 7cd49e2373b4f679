"""docs/api.md is generated from the code and must be current; every public name is documented."""

import importlib.util
from pathlib import Path

import representer as rp

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "tools" / "gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_is_documented():
    assert set(rp.__all__) == _generator().documented_names()


def test_api_reference_is_current():
    assert (ROOT / "docs" / "api.md").read_text() == _generator().render(), "run `python tools/gen_api_docs.py`"
