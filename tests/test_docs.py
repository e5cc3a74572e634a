from pathlib import Path

import pytest

from ortel.core import catalog
from ortel.exporter import docs

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_generated_sections_are_current():
    text = README.read_text()
    assert docs.render(text) == text, "run: python -m ortel.exporter.docs --write README.md"


def test_every_metric_is_in_the_readme():
    text = README.read_text()
    for m in catalog.all_metrics():
        assert f"`{m.name}`" in text


def test_check_reports_stale_file(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text().replace("| `ortel_inferences_total` |", "| `old` |"))
    assert docs.main(["--check", str(stale)]) == 1
    assert docs.main(["--write", str(stale)]) == 0
    assert docs.main(["--check", str(stale)]) == 0


OTEL_DOC = README.parent / "docs" / "otel.md"


def test_readme_keeps_its_three_generated_blocks():
    text = README.read_text()
    for name in ("metrics", "collectors", "options"):
        assert f"<!-- generated:{name} -->" in text


def test_otel_mapping_doc_is_current_and_complete():
    text = OTEL_DOC.read_text()
    assert docs.render(text) == text, "run: python -m ortel.exporter.docs --write docs/otel.md"
    for m in catalog.all_metrics():
        assert f"| `{m.name}` | `{m.otel_name}`" in text


def test_a_text_without_generated_blocks_is_an_error():
    with pytest.raises(ValueError, match="no <!-- generated"):
        docs.render("# nothing to generate here\n")


POWER_DOC = README.parent / "docs" / "power.md"


def test_power_doc_table_is_current_and_lists_every_declared_metric():
    text = POWER_DOC.read_text()
    assert docs.render(text) == text, "run: python -m ortel.exporter.docs --write docs/power.md"
    from ortel.collectors.registry import BY_NAME

    for name in ("rapl", "hwmon", "thermal", "power_supply", "nvml", "powermetrics", "estimate"):
        assert BY_NAME[name].metrics, name
        for m in BY_NAME[name].metrics:
            row = next(line for line in text.splitlines() if line.startswith(f"| `{m.name}` |"))
            assert f"`{name}`" in row
    carbon = next(line for line in text.splitlines() if "`ortel_carbon_grams_total`" in line)
    assert "derived" in carbon
    power = next(line for line in text.splitlines() if line.startswith("| `ortel_power_watts` |"))
    assert "estimated (estimate)" in power


ENERGY_DOC = README.parent / "docs" / "energy.md"


def test_energy_doc_table_is_current_and_lists_every_attribution_metric():
    from ortel.exporter.attribution import DERIVED_METRICS

    text = ENERGY_DOC.read_text()
    assert docs.render(text) == text, "run: python -m ortel.exporter.docs --write docs/energy.md"
    for m in (*DERIVED_METRICS, catalog.BLOCK_ENERGY):
        assert f"| `{m.name}` |" in text
    assert "(docs/energy.md)" in README.read_text()
