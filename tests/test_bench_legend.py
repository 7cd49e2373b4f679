"""The legend of `representer bench`: arrows on the headers it knows, one line per column shown."""

from representer._bench_legend import annotate, unknown_columns

TABLES = """Title

| method | identical class | domain mismatch |
|---|---|---|
| DV | 0.9 | 1.0 |

| method | fit s | explain s | peak MiB |
|---|---:|---:|---:|
| DV | 1.0 | 2.0 | 3 |

| method | card. top-1 | p(y_i|x_i) top-1 | kNN overlap @1 | @5 |
|---|---|---|---|---|
| IF | 3 | 0.5 | 0.1 | 0.2 |
"""


def test_headers_get_arrows_and_the_legend_lists_each_column_shown_once():
    annotated, legend = annotate(TABLES)
    lines = annotated.splitlines()
    assert "| method | identical class ↑ | domain mismatch ↑ |" in lines
    assert "| method | fit s ↓ | explain s ↓ | peak MiB ↓ |" in lines
    assert "| method | card. top-1 ↑ | p(y_i\\|x_i) top-1 ↑ | kNN overlap @1 ↑ | @5 ↑ |" in lines
    assert "| DV | 0.9 | 1.0 |" in lines and lines[0] == "Title" and annotated.endswith("\n")
    assert [line.split(":")[0] for line in legend] == [
        "identical class", "domain mismatch", "fit s", "explain s", "peak MiB", "card. top-k", "p(y_i|x_i) top-k", "kNN overlap @k",
    ]
    assert unknown_columns(TABLES) == []


def test_a_column_without_a_legend_entry_is_reported_and_left_bare():
    tables = "| method | identical class | mystery score |\n|---|---|---|\n"
    assert unknown_columns(tables) == ["mystery score"]
    annotated, legend = annotate(tables)
    assert annotated.splitlines()[0] == "| method | identical class ↑ | mystery score |" and len(legend) == 1
