import gzip
from wsgiref.util import setup_testing_defaults

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import make_wsgi_app as prometheus_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from ortel.core import catalog as c
from ortel.core.catalog import MetricDef
from ortel.core.exposition import ReadingsCollector, go_float, negotiate, render, to_families
from ortel.core.readings import HistogramValue, Reading, SummaryValue, reading
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.server import make_registry, make_wsgi_app


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


# --- the direct writer: byte for byte what prometheus_client's encoders write over the families


def _custom(name, kind, unit="", labels=()) -> MetricDef:
    # Not in the catalogue (MetricDef, not catalog._define): shapes the catalogue lacks today.
    return MetricDef(name, kind, unit, f'Help for {name}: a "quote", a \\ and a\nnewline.', labels)


# A counter whose family name has _total left after the suffix is cut, one with a unit, a gauge
# whose unit its name lacks, label names sorting before and after le and quantile, a histogram
# with a label named le, unlabelled metrics.
TOTAL_TOTAL = _custom("x_events_total_total", "counter", labels=("kind",))
COUNTER_UNIT = _custom("x_busy_seconds_total", "counter", "seconds", ("zone", "a", "mode"))
GAUGE_NO_UNIT = _custom("x_size", "gauge", "bytes", ("b", "a"))
HIST = _custom("x_wait_seconds", "histogram", "seconds", ("zzz", "aaa", "lf", "ld"))
HIST_LE = _custom("x_odd_seconds", "histogram", "seconds", ("le", "model"))
HIST_BARE = _custom("x_bare", "histogram")
SUMMARY = _custom("x_lat_seconds", "summary", "seconds", ("status", "provider", "r"))
SUMMARY_BARE = _custom("x_lat_bare", "summary")
HOSTILE = ['a"b', "c\\d", "e\nf", "é€😀", "\udcff", "\udcfe", "x" * 300, "", "{}=,", '\\"\n']
VALUES = [
    0,
    1,
    0.0,
    -0.0,
    1.5,
    -2.25,
    1e-7,
    123456.0,
    1234567.0,
    -1234567.0,
    1e16,
    1.2345678901234567e300,
    2**53 + 1,
    float("nan"),
    float("inf"),
    float("-inf"),
    np.float64(0.1),
    np.float32(0.1),
    np.int64(7),
    True,
]


def varied() -> list[Reading]:
    rs: list[Reading] = []
    for i, v in enumerate(VALUES):
        rs.append(reading(c.CPU_SECONDS, v, mode=f"m{i}"))
        rs.append(Reading(GAUGE_NO_UNIT, (HOSTILE[i % len(HOSTILE)], str(i)), v))
        rs.append(Reading(TOTAL_TOTAL, (str(i),), v))
    rs.append(reading(c.MEMORY_TOTAL, 16 * 2**30))
    for i, h in enumerate(HOSTILE):
        rs.append(Reading(COUNTER_UNIT, (h, HOSTILE[-1 - i], "user"), i))
        rs.append(Reading(c.INFERENCE_ITEMS, (h, "cpu"), i))
    rs.append(Reading(c.CONTEXT_SWITCHES, (), 10**9))
    b = c.DEFAULT_LATENCY_BUCKETS
    big = tuple(range(10**6 - 3, 10**6 + len(b) - 2))
    rs += [
        Reading(c.INFERENCE_DURATION, ("m", "cpu", "ok"), HistogramValue(b, big, 1.5, 0)),
        Reading(c.INFERENCE_DURATION, ("m", "\udcff", "ok"), HistogramValue(b, (0,) * 27, 0, 0)),
        Reading(HIST, ('q"', "a", "b", "c"), HistogramValue((0.1, 1.0), (1, 2, 3), 1e300, 6)),
        Reading(HIST, ("z", "y", "x", "w"), HistogramValue((), (np.int64(4),), float("nan"), 4)),
        Reading(HIST, ("1", "2", "3", "4"), HistogramValue((-1.0, 0.5), (1, 0, 2), -3.0, 3)),
        Reading(HIST_LE, ("ignored", "m"), HistogramValue((1.0, 1e7), (1, 2, 3), 2.0, 6)),
        Reading(HIST_BARE, (), HistogramValue((0.5, float("inf")), (1, 2, 0), 1.0, 3)),
    ]
    qs = tuple((q, q * 1e-3) for q in c.QUANTILES) + ((1.0, float("nan")),)
    rs += [
        Reading(c.LATENCY_QUANTILE, ("m", "cpu"), SummaryValue(qs, 3.0, 100)),
        Reading(c.LATENCY_QUANTILE, ("m", "gpu"), SummaryValue((), 0.0, 0)),
        Reading(SUMMARY, ("ok", "cpu", 'r"\n'), SummaryValue(qs, float("inf"), 2**40)),
        Reading(SUMMARY_BARE, (), SummaryValue(((0.5, -1.0),), -1.0, 1)),
    ]
    # Duplicates: first place, last value; two surrogates that clean to the same label too.
    rs.append(reading(c.CPU_SECONDS, 99.0, mode="m0"))
    rs.append(Reading(c.INFERENCE_ITEMS, ("\udcfe", "cpu"), 42))
    rs.append(reading(c.MEMORY_TOTAL, 1.0))
    return rs


ESCAPINGS = ["underscores", "dots", "values", "allow-utf-8"]


@pytest.mark.parametrize("escaping", ESCAPINGS)
@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_the_writer_writes_what_prometheus_client_writes(openmetrics: bool, escaping: str) -> None:
    rs = varied()
    encoder = generate_openmetrics if openmetrics else generate_latest
    expected = encoder(registry(rs), escaping)
    assert render(rs, openmetrics, escaping) == expected
    assert render(rs, openmetrics, escaping) == expected  # the cached plans, a second time
    assert b"\\n" in expected and b"NaN" in expected and "€".encode() in expected  # it did


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "text/plain",
        "text/plain; version=0.0.4",
        "text/plain;version=1.0.0;escaping=allow-utf-8",
        "text/plain;version=1.0.0;escaping=dots",
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "application/openmetrics-text;version=1.0.0;escaping=values",
        "application/openmetrics-text;version=2.0.0;escaping=allow-utf-8",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
        "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/json",
    ],
)
def test_negotiation_matches_prometheus_client(accept: str) -> None:
    rs = varied()
    writer, ctype = negotiate(accept)
    encoder, expected_ctype = choose_encoder(accept)
    assert ctype == expected_ctype
    assert writer(rs) == encoder(registry(rs))


def test_empty_readings() -> None:
    assert render([]) == generate_latest(registry([])) == b""
    assert render([], openmetrics=True) == generate_openmetrics(registry([])) == b"# EOF\n"


def test_go_float_is_prometheus_clients_float_format() -> None:
    rnd = np.random.default_rng(0)
    xs = [*VALUES, *rnd.standard_normal(2000) * 10.0 ** rnd.integers(-30, 30, 2000)]
    xs += [float(10**k) for k in range(-5, 25)] + [10**k - 1 for k in range(1, 20)]
    assert [go_float(x) for x in xs] == [floatToGoString(x) for x in xs]


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("GET", "/metrics", "", {}),
        ("GET", "/", "", {"HTTP_ACCEPT": "application/openmetrics-text"}),
        ("GET", "/metrics", "", {"HTTP_ACCEPT_ENCODING": "gzip"}),
        ("GET", "/metrics", "name[]=ortel_inferences_total", {}),
        ("GET", "/favicon.ico", "", {}),
        ("OPTIONS", "/metrics", "", {}),
        ("POST", "/metrics", "", {}),
    ],
)
def test_the_in_process_app_answers_as_prometheus_clients(method, path, query, headers) -> None:
    rec = Recorder()
    rec.series("m", "cpu").ok.extend([1000, 2000, 3_000_000])
    rec.series('m"\n', "gpu").ok.extend([5000])

    def call(app) -> tuple[str, list[tuple[str, str]], bytes]:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, **headers}
        setup_testing_defaults(environ)
        got: list = []
        body = b"".join(app(environ, lambda status, hdrs: got.extend([status, hdrs])))
        if dict(got[1]).get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)  # gzip's header holds the time
        return got[0], got[1], body

    assert call(make_wsgi_app(rec)) == call(prometheus_wsgi_app(make_registry(rec)))
