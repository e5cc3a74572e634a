from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from ortel.core import catalog as c
from ortel.core.exposition import ReadingsCollector, to_families
from ortel.core.readings import HistogramValue, Reading, SummaryValue, reading


def registry(readings):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ReadingsCollector(lambda: readings))
    return reg


def test_histogram_buckets_are_cumulative_with_inf():
    h = HistogramValue((0.1, 1.0), (2, 3, 1), 4.5, 6)
    reg = registry([Reading(c.INFERENCE_DURATION, ("m", "cpu", "ok"), h)])
    labels = {"model": "m", "provider": "cpu", "status": "ok"}
    get = reg.get_sample_value
    name = c.INFERENCE_DURATION.name
    assert get(name + "_bucket", {**labels, "le": "0.1"}) == 2
    assert get(name + "_bucket", {**labels, "le": "1.0"}) == 5
    assert get(name + "_bucket", {**labels, "le": "+Inf"}) == 6
    assert get(name + "_count", labels) == 6 and get(name + "_sum", labels) == 4.5


def test_counter_summary_and_gauge_samples():
    s = SummaryValue(((0.5, 0.01), (0.99, 0.05)), 3.0, 100)
    reg = registry(
        [
            reading(c.INFERENCES, 7, model="m", provider="cpu", status="ok"),
            Reading(c.LATENCY_QUANTILE, ("m", "cpu"), s),
            reading(c.MEMORY_TOTAL, 1024),
        ]
    )
    get = reg.get_sample_value
    assert get("ortel_inferences_total", {"model": "m", "provider": "cpu", "status": "ok"}) == 7
    lat = {"model": "m", "provider": "cpu"}
    assert get("ortel_inference_latency_seconds", {**lat, "quantile": "0.99"}) == 0.05
    assert get("ortel_inference_latency_seconds_count", lat) == 100
    assert get("ortel_memory_total_bytes", {}) == 1024


def test_help_type_and_units_come_from_the_catalogue():
    reg = registry([reading(c.CPU_SECONDS, 1.5, mode="user")])
    text = generate_latest(reg).decode()
    assert f"# HELP ortel_cpu_seconds_total {c.CPU_SECONDS.help}" in text
    assert "# TYPE ortel_cpu_seconds_total counter" in text
    om = generate_openmetrics(reg).decode()
    assert "# UNIT ortel_cpu_seconds seconds" in om and om.endswith("# EOF\n")


def test_one_family_per_metric_and_duplicate_labels_keep_the_last():
    rs = [reading(c.CPU_UTILIZATION, v, mode="user") for v in (0.1, 0.2)]
    fams = list(to_families(rs))
    assert len(fams) == 1 and [s.value for s in fams[0].samples] == [0.2]


def test_hostile_label_values_are_escaped():
    reg = registry([reading(c.INFERENCE_ITEMS, 1, model='a"b\nc\\', provider="\udcff")])
    text = generate_latest(reg).decode("utf-8", "replace")
    assert 'model="a\\"b\\nc\\\\"' in text


def test_overlong_label_values_are_cut():
    reg = registry([reading(c.INFERENCE_ITEMS, 1, model="x" * 5000, provider="cpu")])
    text = generate_latest(reg).decode()
    assert "x" * 255 + "…" in text and "x" * 256 not in text
