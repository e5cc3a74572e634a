from pathlib import Path

from ortel.exporter import docs
from ortel.instrumentation import catalog

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
