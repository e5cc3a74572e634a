"""Service files under packaging/: the systemd unit (verified by systemd-analyze, hardening scored
by its offline security audit), its drop-ins, the launchd plist, and the example config: every
command line they run is accepted by the real ``ortel serve --check-config``.
"""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from harness import require_tool

from ortel.exporter.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
UNIT = PACKAGING / "systemd" / "ortel.service"
DROPINS = PACKAGING / "systemd" / "dropins"
PLIST = PACKAGING / "launchd" / "org.ortel.serve.plist"
EXAMPLE_CONFIG = PACKAGING / "ortel.yaml"
INSTALLED_BINARY = "/usr/local/bin/ortel"


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, every value of a repeated key, in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def ortel_executable() -> str:
    """The installed console script (same environment as the tests)."""
    path = shutil.which("ortel") or str(Path(sys.executable).parent / "ortel")
    assert Path(path).is_file(), "ortel is not installed (pip install -e '.[test]')"
    return path


def unit_copy(tmp_path: Path, *dropins: str) -> Path:
    """The unit in tmp_path with ExecStart on this machine's ortel (verify checks that the
    binary exists), plus the named drop-ins in ortel.service.d/."""
    unit = tmp_path / "ortel.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, ortel_executable()))
    if dropins:
        (tmp_path / "ortel.service.d").mkdir()
        for name in dropins:
            shutil.copy(DROPINS / name, tmp_path / "ortel.service.d" / name)
    return unit


def check_config(argv: list[str], tmp_path: Path) -> None:
    """``ortel ARGV --check-config``, with config paths pointed at the example config."""
    args = []
    for a in argv:
        args.append(str(EXAMPLE_CONFIG) if a.endswith("/ortel/ortel.yaml") else a)
    res = CliRunner().invoke(cli, [*args, "--check-config"])
    assert res.exit_code == 0, res.output
    assert "config OK" in res.output


# --- systemd ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dropins", [(), ("rapl.conf",), ("gpu.conf",), ("rapl.conf", "gpu.conf")])
def test_systemd_analyze_verify_is_clean(tmp_path, dropins):
    exe = require_tool("systemd-analyze")
    unit = unit_copy(tmp_path, *dropins)
    res = subprocess.run(
        [exe, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    # Unknown keys and bad values are only warnings (exit 0): any output at all is a finding.
    assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), res


def exposure(tmp_path: Path, *dropins: str) -> float:
    exe = require_tool("systemd-analyze")
    unit = unit_copy(tmp_path, *dropins)
    res = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    m = re.search(r"Overall exposure level for ortel\.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    return float(m.group(1))


def test_systemd_hardening_scores_ok(tmp_path):
    # systemd's own audit: 0 is fully locked down, 10 unprotected; <= 2 is rated "OK".
    assert exposure(tmp_path) <= 2.0
    (tmp_path / "rapl").mkdir()
    assert exposure(tmp_path / "rapl", "rapl.conf") <= 2.0


def test_systemd_unit_hardening_settings():
    s = unit_settings(UNIT.read_text())
    assert s["DynamicUser"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["ReadOnlyPaths"] == ["/sys"]
    assert s["CapabilityBoundingSet"] == [""] and s["AmbientCapabilities"] == [""]
    assert s["NoNewPrivileges"] == ["yes"] and s["PrivateDevices"] == ["yes"]
    assert s["RuntimeDirectory"] == ["ortel"] and s["RuntimeDirectoryPreserve"] == ["yes"]
    rapl = unit_settings((DROPINS / "rapl.conf").read_text())
    assert rapl == {
        "CapabilityBoundingSet": ["CAP_DAC_READ_SEARCH"],
        "AmbientCapabilities": ["CAP_DAC_READ_SEARCH"],
    }


def test_systemd_command_line_is_accepted_by_ortel(tmp_path):
    (exec_start,) = unit_settings(UNIT.read_text())["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED_BINARY
    check_config(argv[1:], tmp_path)
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    runtime = unit_settings(UNIT.read_text())["RuntimeDirectory"][0]
    assert config["multiproc_dir"] == f"/run/{runtime}"  # the directory systemd creates


# --- launchd ------------------------------------------------------------------------------------
# launchd.plist(5): the keys used here and the type each must have.
LAUNCHD_KEYS: dict[str, type | tuple[type, ...]] = {
    "Label": str,
    "ProgramArguments": list,
    "EnvironmentVariables": dict,
    "RunAtLoad": bool,
    "KeepAlive": (bool, dict),
    "ThrottleInterval": int,
    "ProcessType": str,
    "LowPriorityIO": bool,
    "Umask": int,
    "StandardOutPath": str,
    "StandardErrorPath": str,
    "UserName": str,
}


def test_launchd_plist_is_well_formed():
    raw = PLIST.read_bytes()
    assert b'<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN"' in raw
    plist = plistlib.loads(raw, fmt=plistlib.FMT_XML)  # strict XML parse, like plutil -lint
    assert set(plist) <= set(LAUNCHD_KEYS), set(plist) - set(LAUNCHD_KEYS)
    for key, value in plist.items():
        assert isinstance(value, LAUNCHD_KEYS[key]), (key, value)
    assert plist["Label"] == PLIST.stem
    assert all(isinstance(a, str) for a in plist["ProgramArguments"])
    assert plist["ProcessType"] in {"Background", "Standard", "Adaptive", "Interactive"}
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert plist[key].startswith("/")
    assert plist["Umask"] == 0o022
    # Round trip: what plistlib writes back parses to the same thing (no lossy values).
    assert plistlib.loads(plistlib.dumps(plist)) == plist


def test_launchd_command_line_is_accepted_by_ortel(tmp_path):
    argv = plistlib.loads(PLIST.read_bytes())["ProgramArguments"]
    assert argv[0] == INSTALLED_BINARY
    check_config(argv[1:], tmp_path)


def test_a_bad_command_line_is_caught(tmp_path):
    """The check above is not vacuous: a misspelt flag fails it."""
    with pytest.raises(AssertionError, match="No such option"):
        check_config(["serve", "--conifg", str(EXAMPLE_CONFIG)], tmp_path)
