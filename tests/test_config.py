"""Settings: --listen parsing, validation, config files, and flag > env > file > default."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ortel.collectors.registry import SPECS
from ortel.exporter.cli import cli
from ortel.exporter.config import (
    OPTIONS,
    ConfigError,
    Settings,
    build_settings,
    load_file,
    parse_listen,
)

# Every collector on by default, in registry order (issue collectors add themselves there).
ALL_DEFAULT = ",".join(s.name for s in SPECS if s.enabled_by_default)


@pytest.fixture(autouse=True)
def _no_ortel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's ORTEL_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("ORTEL_"):
            monkeypatch.delenv(name)


def params(**overrides: Any) -> dict[str, Any]:
    """What click hands to build_settings when nothing is set: every option at its default."""
    p = {o.name: o.default for o in OPTIONS}
    p.update(overrides)
    return p


# --- parse_listen ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:9464", ("::", 9464)),
        (":9464", ("0.0.0.0", 9464)),  # every interface, as Prometheus's exporters read it
        ("localhost:1", ("localhost", 1)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_listen_accepts(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("127.0.0.1", "expected HOST:PORT"),  # no port
        ("127.0.0.1:", "expected HOST:PORT"),
        ("9464", "expected HOST:PORT"),
        ("127.0.0.1:70000", "expected HOST:PORT"),
        ("127.0.0.1:-1", "expected HOST:PORT"),
        ("127.0.0.1:http", "expected HOST:PORT"),
        ("127.0.0.1:²", "expected HOST:PORT"),  # isdigit() but not int(): no traceback
        ("abc:12", "'abc' is not an IP address"),
        ("example.com:9464", "'example.com' is not an IP address"),
        ("[::1:9464", "is not an IP address"),
    ],
)
def test_parse_listen_rejects(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match="--listen") as e:
        parse_listen(value)
    assert why in str(e.value)
    assert repr(value) in str(e.value)


# --- build_settings ----------------------------------------------------------------------------


def test_build_settings_defaults() -> None:
    s = build_settings(params())
    assert isinstance(s, Settings)
    assert (s.host, s.port) == ("127.0.0.1", 9464)
    assert s.collectors == tuple(ALL_DEFAULT.split(","))
    assert s.interval == 1.0
    assert s.options.interval == 1.0
    assert s.options.window_seconds == 60.0
    assert s.options.procfs == Path("/proc")
    assert s.options.multiproc_dir is None
    assert (s.demo, s.log_level) == (False, "info")


def test_build_settings_passes_options_to_collectors(tmp_path: Path) -> None:
    s = build_settings(
        params(
            procfs=tmp_path / "p",
            sysfs=tmp_path / "s",
            multiproc_dir=tmp_path / "m",
            per_core=True,
            interval=0.25,
            window=30.0,
        )
    )
    o = s.options
    assert (o.procfs, o.sysfs, o.multiproc_dir) == (tmp_path / "p", tmp_path / "s", tmp_path / "m")
    assert (o.per_core, o.interval, o.window_seconds) == (True, 0.25, 30.0)


def test_unknown_collector_is_named_in_the_error() -> None:
    with pytest.raises(ConfigError) as e:
        build_settings(params(collectors="cpu,gpu_magic"))
    assert "'gpu_magic'" in str(e.value)
    assert "known: cpu, memory, process, inference" in str(e.value)


def test_unknown_disabled_collector_is_an_error_too() -> None:
    with pytest.raises(ConfigError, match="'nope'"):
        build_settings(params(disable_collectors="nope"))


def test_disable_collectors_removes_them() -> None:
    s = build_settings(params(disable_collectors="memory, inference"))
    off = ("memory", "inference")
    assert s.collectors == tuple(n for n in ALL_DEFAULT.split(",") if n not in off)
    assert s.collectors[:2] == ("cpu", "process")


def test_collector_list_tolerates_spaces_and_empty_items_and_keeps_order() -> None:
    assert build_settings(params(collectors=" memory ,, cpu,")).collectors == ("memory", "cpu")


def test_a_collector_named_twice_runs_once() -> None:
    assert build_settings(params(collectors="cpu,memory,cpu")).collectors == ("cpu", "memory")


@pytest.mark.parametrize("key", ["interval", "window"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_interval_and_window_must_be_positive(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"--{key} must be greater than 0"):
        build_settings(params(**{key: value}))


@pytest.mark.parametrize("key", ["interval", "window"])
def test_interval_and_window_must_be_finite(key: str) -> None:
    with pytest.raises(ConfigError, match=f"--{key} must be at most"):
        build_settings(params(**{key: float("inf")}))


def test_bad_listen_surfaces_from_build_settings() -> None:
    with pytest.raises(ConfigError, match="--listen"):
        build_settings(params(listen="nowhere"))


# --- load_file ---------------------------------------------------------------------------------

EXPECTED = {"listen": "127.0.0.1:1", "collectors": "cpu,memory", "per_core": True, "interval": 0.5}

GOOD_FILES = {
    "yaml": 'listen: "127.0.0.1:1"\ncollectors: [cpu, memory]\nper-core: true\ninterval: 0.5\n',
    "yml": 'listen: "127.0.0.1:1"\ncollectors: [cpu, memory]\nper-core: true\ninterval: 0.5\n',
    "toml": 'listen = "127.0.0.1:1"\ncollectors = ["cpu", "memory"]\nper-core = true\n'
    "interval = 0.5\n",
    "json": json.dumps(
        {
            "listen": "127.0.0.1:1",
            "collectors": ["cpu", "memory"],
            "per-core": True,
            "interval": 0.5,
        }
    ),
}


@pytest.mark.parametrize("suffix", sorted(GOOD_FILES))
def test_load_file_reads_each_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ortel.{suffix}"
    path.write_text(GOOD_FILES[suffix])
    # Lists become the comma-separated string the flag takes; dashed keys become option names.
    assert load_file(path) == EXPECTED


def test_load_file_accepts_underscored_keys_too(tmp_path: Path) -> None:
    path = tmp_path / "ortel.yaml"
    path.write_text("disable_collectors: inference\nmultiproc-dir: /tmp/x\n")
    assert load_file(path) == {"disable_collectors": "inference", "multiproc_dir": "/tmp/x"}


def test_empty_yaml_file_sets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ortel.yaml"
    path.write_text("# nothing set yet\n")
    assert load_file(path) == {}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ortel.yaml", "listen: ':1'\nbogus-key: 1\n"),
        ("ortel.toml", 'bogus-key = 1\nlisten = ":1"\n'),
        ("ortel.json", '{"bogus-key": 1}'),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_file(path)
    msg = str(e.value)
    assert "unknown key 'bogus-key'" in msg
    assert str(path) in msg
    assert "listen" in msg  # the known keys are listed


def test_check_config_is_not_a_file_key(tmp_path: Path) -> None:
    path = tmp_path / "ortel.yaml"
    path.write_text("check-config: true\n")
    with pytest.raises(ConfigError, match="unknown key 'check-config'"):
        load_file(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ortel.yaml", "- listen\n- interval\n"),
        ("ortel.yaml", "just a string\n"),
        ("ortel.json", '["listen"]'),
        ("ortel.json", "42"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_file(path)


def test_missing_file_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read config") as e:
        load_file(path)
    assert str(path) in str(e.value)
    assert "No such file" in str(e.value)


def test_directory_cannot_be_read(tmp_path: Path) -> None:
    # Permission bits do not stop root, so "unreadable" is tested with a directory.
    with pytest.raises(ConfigError, match="cannot read config"):
        load_file(tmp_path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("ortel.yaml", "a: [\n"),
        ("ortel.yaml", "listen: a: b\n"),
        ("ortel.yaml", "\tlisten: x\n"),
        ("ortel.toml", "listen = \n"),
        ("ortel.toml", "[[[\n"),
        ("ortel.json", '{"listen": '),
        ("ortel.json", "{'listen': 1}"),
    ],
)
def test_invalid_syntax_is_one_line(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_file(path)
    msg = str(e.value)
    assert msg.startswith(f"config {path} is not valid: "), msg
    assert "\n" not in msg
    assert e.value.__suppress_context__  # no chained parser traceback


def test_non_utf8_toml_is_invalid_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "ortel.toml"
    path.write_bytes(b'listen = "\xff"\n')
    with pytest.raises(ConfigError, match="is not valid"):
        load_file(path)


# --- precedence: flag > env > file > default, through the real command -----------------------


def check_config(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, ["serve", "--check-config", *args], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.startswith("ortel: config OK"), result.stdout
    return result.stdout.strip()


def ok_line(listen: str, collectors: str) -> str:
    return f"ortel: config OK (listen {listen}, collectors {collectors})"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "ortel.yaml"
    path.write_text("listen: 127.0.0.1:1111\ncollectors: [cpu, memory]\n")
    return path


def test_defaults_apply_when_nothing_is_set() -> None:
    assert check_config([]) == ok_line("127.0.0.1:9464", ALL_DEFAULT)


def test_file_overrides_defaults(config_file: Path) -> None:
    assert check_config(["--config", str(config_file)]) == ok_line("127.0.0.1:1111", "cpu,memory")


def test_env_overrides_file(config_file: Path) -> None:
    out = check_config(["--config", str(config_file)], env={"ORTEL_LISTEN": "127.0.0.1:2222"})
    # The env var wins for listen; collectors, not set in the env, still come from the file.
    assert out == ok_line("127.0.0.1:2222", "cpu,memory")


def test_flag_overrides_env_and_file(config_file: Path) -> None:
    out = check_config(
        ["--config", str(config_file), "--listen", "127.0.0.1:3333"],
        env={"ORTEL_LISTEN": "127.0.0.1:2222"},
    )
    assert out == ok_line("127.0.0.1:3333", "cpu,memory")


def test_flag_before_config_still_wins(config_file: Path) -> None:
    # --config is eager: where it sits on the command line does not change precedence.
    out = check_config(["--collectors", "process", "--config", str(config_file)])
    assert out == ok_line("127.0.0.1:1111", "process")


def test_env_overrides_default() -> None:
    out = check_config([], env={"ORTEL_LISTEN": "[::1]:4444", "ORTEL_COLLECTORS": "memory"})
    assert out == ok_line("::1:4444", "memory")


def test_config_file_from_env(config_file: Path) -> None:
    assert check_config([], env={"ORTEL_CONFIG": str(config_file)}) == ok_line(
        "127.0.0.1:1111", "cpu,memory"
    )


def test_disable_collectors_combines_across_sources(config_file: Path) -> None:
    out = check_config(["--config", str(config_file)], env={"ORTEL_DISABLE_COLLECTORS": "memory"})
    assert out == ok_line("127.0.0.1:1111", "cpu")


# --- hostile config files (property-based) -------------------------------------------------------

import contextlib  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ortel.exporter.cli import main  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None)


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".yml", ".json", ".toml"]))
def test_property_any_bytes_load_or_raise_config_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"ortel{suffix}"
        path.write_bytes(data)
        try:
            out = load_file(path)
        except ConfigError as e:
            assert "\n" not in str(e)
        else:
            assert isinstance(out, dict) and set(out) <= {o.name for o in OPTIONS}


scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
value_st = scalar | st.lists(scalar, max_size=3) | st.dictionaries(st.text(max_size=5), scalar)
key_st = st.sampled_from([o.name for o in OPTIONS] + [o.name.replace("_", "-") for o in OPTIONS])


def run_main(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
        except SystemExit as e:
            return int(e.code or 0), err.getvalue()
    return 0, err.getvalue()


@FUZZ
@given(doc=st.dictionaries(key_st, value_st, max_size=5))
def test_property_any_known_keys_with_any_values_exit_0_or_one_line_and_2(doc: dict) -> None:
    doc.pop("demo", None)  # --check-config never starts it, but keep the run side-effect free
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ortel.json"
        path.write_text(json.dumps(doc))
        code, err = run_main(["serve", "--check-config", "--config", str(path)])
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("ortel: error: ") and err.count("\n") == 1, err


# --- power profile and grid intensity (issue 3) ------------------------------------------------


def test_power_options_defaults_and_sources() -> None:
    s = build_settings(params())
    assert (s.options.cpu_idle_watts, s.options.cpu_max_watts) == (0.74, 3.5)
    assert s.grid_intensity_g_per_kwh == 475.0
    s = build_settings(params(cpu_idle_watts=2.0, cpu_max_watts=2.0, grid_intensity_g_per_kwh=0.0))
    assert (s.options.cpu_idle_watts, s.options.cpu_max_watts) == (2.0, 2.0)
    assert s.grid_intensity_g_per_kwh == 0.0


def test_power_options_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ortel.exporter.cli as cli_module

    seen: list[Settings] = []

    def record(p: dict[str, Any]) -> Settings:
        seen.append(build_settings(p))
        return seen[-1]

    monkeypatch.setattr(cli_module, "build_settings", record)
    path = tmp_path / "ortel.toml"
    path.write_text("cpu_idle_watts = 1.5\ncpu-max-watts = 6\ngrid_intensity_g_per_kwh = 30\n")
    env = {"ORTEL_GRID_INTENSITY_G_PER_KWH": "56"}  # environment beats the file
    check_config(["--config", str(path)], env=env)
    (s,) = seen
    assert (s.options.cpu_idle_watts, s.options.cpu_max_watts) == (1.5, 6.0)
    assert s.grid_intensity_g_per_kwh == 56.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpu-idle-watts", "5", "--cpu-max-watts", "4"], "need 0 <= idle <= max"),
        (["--cpu-idle-watts", "-1"], "need 0 <= idle <= max"),
        (["--cpu-max-watts", "nan"], "need 0 <= idle <= max"),
        (["--cpu-max-watts", "inf"], "need 0 <= idle <= max"),
        (["--grid-intensity-g-per-kwh", "-3"], "--grid-intensity-g-per-kwh must be in"),
        (["--grid-intensity-g-per-kwh", "inf"], "--grid-intensity-g-per-kwh must be in"),
    ],
)
def test_bad_power_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, err = run_main(["serve", "--check-config", *args])
    assert code == 2
    assert err.startswith("ortel: error: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("listen:\n", "listen has no value"),
        ("sysfs: 0\n", "sysfs must be a path"),
        ("procfs: -1\n", "procfs must be a path"),
        ("interval: {a: 1}\n", "interval must be a single value"),
        ("per_core: 3\n", "per_core must be true or false"),
        ("collectors: [cpu, {a: 1}]\n", "collectors must be a list of names"),
        ("window: 2024-01-01\n", "window must be a single value"),
    ],
)
def test_values_of_the_wrong_type_are_one_clear_line(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "ortel.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_file(path)
