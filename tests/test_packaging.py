"""The two source halves (exporter/, instrumentation/) ship as one `ortel` namespace package."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HALVES = ("exporter", "instrumentation")


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{argv} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def test_source_import_spans_both_halves() -> None:
    import ortel
    import ortel.exporter
    import ortel.instrumentation

    assert getattr(ortel, "__file__", None) is None, "ortel must stay a namespace package"
    portions = {Path(p).resolve() for p in ortel.__path__}
    assert {REPO / half / "ortel" for half in HALVES} <= portions, portions
    assert Path(ortel.exporter.__path__[0]).resolve() == REPO / "exporter/ortel/exporter"
    inst = Path(ortel.instrumentation.__path__[0]).resolve()
    assert inst == REPO / "instrumentation/ortel/instrumentation"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    argv = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out)]
    # Offline and fast when the backend is already here; else build fetches it (network).
    if importlib.util.find_spec("hatchling") is not None:
        argv.append("--no-isolation")
    _run([*argv, str(REPO)], cwd=out)
    (whl,) = out.glob("ortel-*.whl")
    return whl


def _source_files(half: str) -> set[str]:
    root = REPO / half
    files = set()
    for p in (root / "ortel").rglob("*"):
        shipped = p.suffix == ".py" or "data" in p.relative_to(root).parts
        if p.is_file() and shipped and "__pycache__" not in p.parts:
            files.add(p.relative_to(root).as_posix())
    return files


@pytest.mark.slow
def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for half in HALVES:
        assert any(n.startswith(f"ortel/{half}/") for n in names), f"no ortel/{half}/ in {wheel}"
        missing = _source_files(half) - names
        assert not missing, f"source files missing from the wheel: {sorted(missing)}"
    # An ortel/__init__.py would shadow the other half wherever both are installed.
    assert "ortel/__init__.py" not in names


# Run in the venv: keeps only sys.path entries inside the venv and the base interpreter, since an
# editable install's .pth in the (shared) system site-packages — of this checkout or any other —
# would otherwise put source halves back on it.
PROBE = textwrap.dedent(
    """
    import json, os, sys
    roots = tuple(os.path.realpath(r) + os.sep for r in (sys.prefix, sys.base_prefix))
    sys.path[:] = [p for p in sys.path if p and (os.path.realpath(p) + os.sep).startswith(roots)]
    import ortel, ortel.exporter, ortel.instrumentation
    print(json.dumps({
        "ortel": list(ortel.__path__),
        "exporter": ortel.exporter.__file__,
        "instrumentation": ortel.instrumentation.__file__ or list(ortel.instrumentation.__path__),
        "prefix": sys.prefix,
    }))
    """
)


@pytest.mark.slow
def test_wheel_installs_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # --system-site-packages gives the runtime deps (and pip) without a network install.
    _run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        tmp_path,
    )
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # --force-reinstall: the same version is already "installed" (editable) outside the venv.
    _run([*pip, "install", "--no-deps", "--force-reinstall", str(wheel)], tmp_path)

    res = _run([str(py), "-c", PROBE, str(REPO)], cwd=tmp_path)
    info = json.loads(res.stdout)
    site = (venv / "lib").resolve()
    assert Path(info["prefix"]).resolve() == venv.resolve()
    assert [Path(p).resolve().is_relative_to(site) for p in info["ortel"]] == [True], info
    for key in ("exporter", "instrumentation"):
        paths = info[key] if isinstance(info[key], list) else [info[key]]
        for p in paths:
            assert Path(p).resolve().is_relative_to(site), f"{key} imported from {p}, not the venv"

    res = _run([str(venv / "bin" / "ortel"), "--help"], cwd=tmp_path, timeout=60)
    assert "serve" in res.stdout, res.stdout
