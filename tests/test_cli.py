"""The ``ortel`` command line: one-line errors with exit code 2, help and version, import purity."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from harness import LOOPBACK

from ortel.exporter import daemon
from ortel.exporter.cli import main
from ortel.exporter.config import OPTIONS

ERROR = "ortel: error: "


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ORTEL_* from the caller, and no in-process test may ever start a real daemon."""
    for name in list(os.environ):
        if name.startswith("ORTEL_"):
            monkeypatch.delenv(name)

    def no_daemon(*_: object, **__: object) -> None:
        raise AssertionError("bad input reached Daemon(): it should have been rejected first")

    monkeypatch.setattr(daemon, "Daemon", no_daemon)


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``ortel ARGV`` run in-process."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    code = e.value.code
    return (0 if code is None else int(code)), out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line on stderr: {err!r}"
    assert err.startswith(ERROR), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["serve", "--collectors", "cpu,nope"], ["unknown collector 'nope'"]),
        (["serve", "--disable-collectors", "nope"], ["unknown collector 'nope'"]),
        (["serve", "--listen", "nowhere"], ["--listen 'nowhere'", "HOST:PORT"]),
        (["serve", "--listen", "example.com:9464"], ["'example.com' is not an IP address"]),
        (["serve", "--listen", "127.0.0.1:70000"], ["--listen"]),
        (["serve", "--bogus"], ["--bogus"]),
        (["serve", "--intrval", "2"], ["--intrval", "--interval"]),  # with the suggestion
        (["serve", "--interval", "abc"], ["--interval", "'abc'"]),
        (["serve", "--interval", "0"], ["--interval must be greater than 0"]),
        (["serve", "--window", "-5"], ["--window must be greater than 0"]),
        (["serve", "--log-level", "loud"], ["--log-level", "'loud'"]),
        (["serve", "--per-core=3"], ["--per-core"]),
        (["serve", "--interval"], ["--interval"]),  # missing value
        (["nosuchcommand"], ["nosuchcommand"]),
        (["demo", "--collectors", "nope"], ["unknown collector 'nope'"]),
    ],
)
def test_bad_flags_give_one_error_line_and_exit_2(
    args: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(args, capsys)
    assert code == 2
    assert out == ""
    assert_one_error_line(err, *fragments)


def test_bad_env_var_gives_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORTEL_INTERVAL", "soon")
    code, _, err = run_main(["serve"], capsys)
    assert code == 2
    assert_one_error_line(err, "ORTEL_INTERVAL", "'soon'")


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.yaml"
    code, _, err = run_main(["serve", "--config", str(path)], capsys)
    assert code == 2
    assert_one_error_line(err, "cannot read config", str(path))


def test_config_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["serve", "--config", str(tmp_path)], capsys)
    assert code == 2
    assert_one_error_line(err, "--config")


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.yaml", "listen: [127.0.0.1\n", "is not valid"),
        ("bad.toml", "listen = \n", "is not valid"),
        ("bad.json", '{"listen": ', "is not valid"),
        ("unknown.yaml", "listen: ':9464'\nlisten_on: ':1'\n", "unknown key 'listen_on'"),
        ("list.yaml", "- cpu\n", "top level must be a mapping"),
        ("badval.yaml", "interval: abc\n", "--interval"),
        ("badlisten.toml", 'listen = "nowhere"\n', "--listen 'nowhere'"),
        ("badcol.json", '{"collectors": ["cpu", "nope"]}', "unknown collector 'nope'"),
    ],
)
def test_bad_config_file_gives_one_error_line(
    tmp_path: Path, name: str, text: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, _, err = run_main(["serve", "--config", str(path)], capsys)
    assert code == 2
    assert_one_error_line(err, fragment)


def test_bad_config_file_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: [\n")
    monkeypatch.setenv("ORTEL_CONFIG", str(path))
    code, _, err = run_main(["serve"], capsys)
    assert code == 2
    assert_one_error_line(err, str(path), "is not valid")


def serve_subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ortel.exporter.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port with a listening socket on it for the duration of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_in_use_is_one_error_line(busy_port: int) -> None:
    res = serve_subprocess("--listen", f"{LOOPBACK}:{busy_port}", "--collectors", "cpu")
    assert res.returncode == 2, res
    assert_one_error_line(res.stderr, f"cannot listen on {LOOPBACK}:{busy_port}", "in use")
    assert res.stdout == ""


def test_port_in_use_with_demo_leaves_no_temp_dir(busy_port: int, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    env["TMPDIR"] = str(tmp_path)  # where the demo's multiprocess dir would be created
    res = serve_subprocess("--listen", f"{LOOPBACK}:{busy_port}", "--demo", env=env)
    assert res.returncode == 2, res
    assert_one_error_line(res.stderr, "cannot listen on")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen: a: b\n")
    res = serve_subprocess("--config", str(path))
    assert res.returncode == 2, res
    assert_one_error_line(res.stderr, "is not valid")


# --- good input --------------------------------------------------------------------------------


def test_check_config_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["serve", "--check-config", "--collectors", "cpu"], capsys)
    assert code == 0
    assert out == "ortel: config OK (listen 127.0.0.1:9464, collectors cpu)\n"
    assert err == ""


def test_demo_check_config_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["demo", "--check-config"], capsys)
    assert code == 0
    assert out.startswith("ortel: config OK")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0
    assert out == f"ortel, version {version('ortel')}\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_commands(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main([flag], capsys)
    assert code == 0
    assert out.startswith("Usage: ortel ")
    commands = out.split("Commands:", 1)[1]
    assert re.search(r"^\s+serve\s", commands, re.M), out
    assert re.search(r"^\s+demo\s", commands, re.M), out


def test_bare_ortel_shows_help_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main([], capsys)
    assert code == 2  # click's own convention for a group called without a command
    text = out + err
    assert "Usage: ortel " in text
    assert "serve" in text
    assert ERROR not in text


def option_blocks(help_text: str) -> dict[str, str]:
    """``--flag`` -> its help block, whitespace-normalised (click wraps long lines)."""
    blocks: dict[str, str] = {}
    current: list[str] | None = None
    for line in help_text.split("Options:", 1)[1].splitlines():
        m = re.match(r"^  (-\S+)", line)
        if m:
            current = blocks.setdefault(m.group(1).rstrip(","), [])
        if current is not None:
            current.append(line.strip())
    return {flag: " ".join(lines) for flag, lines in blocks.items()}


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_serve_help_lists_every_option_with_its_env_var(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main([command, "--help"], capsys)
    assert code == 0
    blocks = option_blocks(out)
    for o in OPTIONS:
        assert o.opt in blocks, f"{o.opt} missing from `ortel {command} --help`:\n{out}"
        block = blocks[o.opt]
        assert f"env var: {o.envvar}" in block, block
        assert o.help.split()[0] in block, block
        if o.flag:
            assert block.startswith(f"{o.opt} / {o.opt.replace('--', '--no-')}"), block
    assert "env var: ORTEL_CONFIG" in blocks["--config"]
    assert "--check-config" in blocks


# --- import purity -----------------------------------------------------------------------------

_EXPORTER_IMPORTS = """
import importlib, json, pkgutil, sys
import ortel.collectors, ortel.exporter
names = ["ortel.exporter.cli", "ortel.exporter.daemon"]
for pkg in (ortel.exporter, ortel.collectors):  # the daemon and its collectors
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if not info.name.endswith("__main__"):  # running it would start the CLI
            names.append(info.name)
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""

_SHIM_IMPORTS = """
import importlib, json, sys
for name in ["ortel.instrumentation", "ortel.instrumentation.decorator",
             "ortel.instrumentation.session", "ortel.instrumentation.recorder"]:
    importlib.import_module(name)
print(json.dumps({"modules": sorted(sys.modules)}))
"""


def _fresh_import(code: str, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    res = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 0, res.stderr
    return res


def _top_level(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def import_chain(importtime_stderr: str, target: str) -> list[str]:
    """Who imported ``target`` first, outermost first, from ``python -X importtime`` output."""
    entries = []
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        raw = line.rsplit("|", 1)[1]
        name = raw.strip()
        if name == "package":
            continue  # the header line
        entries.append((len(raw) - len(raw.lstrip()), name))
    # Children are printed before their parent, one level deeper: walk forward to the parents.
    for i, (depth, name) in enumerate(entries):
        if name == target:
            chain = [name]
            for d, n in entries[i + 1 :]:
                if d < depth:
                    chain.append(n)
                    depth = d
            return chain[::-1]
    return []


def test_exporter_imports_neither_onnxruntime_nor_onnx() -> None:
    doc = json.loads(_fresh_import(_EXPORTER_IMPORTS).stdout)
    collectors = [n for n in doc["imported"] if n.startswith("ortel.collectors.")]
    assert {"cpu", "memory", "process", "inference", "registry", "base"} <= {
        n.rsplit(".", 1)[1] for n in collectors
    }
    loaded = _top_level(doc["modules"])
    assert "onnxruntime" not in loaded
    assert "onnx" not in loaded
    if "numpy" in loaded:  # not a failure: report who pulls it in
        res = _fresh_import(_EXPORTER_IMPORTS, "-X", "importtime")
        chain = " -> ".join(import_chain(res.stderr, "numpy")) or "unknown"
        warnings.warn(f"the exporter imports numpy: {chain}", stacklevel=1)


def test_import_chain_reads_importtime_output() -> None:
    # The shim does import numpy (recorder): the helper above must be able to say so.
    res = _fresh_import("import ortel.instrumentation.recorder", "-X", "importtime")
    chain = import_chain(res.stderr, "numpy")
    assert chain[0] == "ortel.instrumentation.recorder"
    assert chain[-1] == "numpy"


def test_shim_never_imports_the_exporter() -> None:
    doc = json.loads(_fresh_import(_SHIM_IMPORTS).stdout)
    ortel = [m for m in doc["modules"] if m.startswith("ortel.")]
    assert "ortel.instrumentation.recorder" in ortel
    assert not [m for m in ortel if m.startswith("ortel.exporter")], ortel


def test_an_error_quoting_control_characters_stays_one_line(capsys):
    from ortel.core.cli import fail

    with pytest.raises(SystemExit) as exit_:
        fail("cannot read web config \n\t\x00é.yml: No such file or directory")
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert (
        err == "ortel: error: cannot read web config \\n\\t\\x00é.yml: No such file or directory\n"
    )
