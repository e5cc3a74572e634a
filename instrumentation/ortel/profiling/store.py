"""The results store: every ``ortel profile`` run in one DuckDB file.

Tables (one row per …): ``runs`` (run: time, host, CPU model, cores, OS, onnxruntime version,
model hash, the whole summary as JSON), ``configs`` (configuration: provider, precision, batch,
sequence length, concurrency and its statistics), ``samples`` (measured latency, warm-up latency,
time to first token, inter-token latency; in order), ``operators`` (node of the operator
profile), ``power`` (point of the power timeline), ``generations`` (generation run summary).

Run ids are random UUIDs, so runs made on different hosts merge without clashes
(``ortel runs import``). A run is referred to by its id, a unique prefix of it, ``latest``,
``latest~N`` (N runs before the latest) or ``label:NAME`` (the latest run with that label).
"""

from __future__ import annotations

import builtins
import json
import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
EXPORT_FORMAT = "ortel-runs"
TABLES = ("runs", "configs", "samples", "operators", "power", "generations")
STATS = ("p50", "p90", "p95", "p99", "p999", "mean", "stddev", "min", "max")

DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY, started TIMESTAMP, finished TIMESTAMP, label VARCHAR,
        host VARCHAR, cpu_model VARCHAR, cores INTEGER, os VARCHAR, python VARCHAR,
        onnxruntime_version VARCHAR, ortel_version VARCHAR, model_name VARCHAR,
        model_path VARCHAR, model_sha256 VARCHAR, providers VARCHAR, baseline INTEGER,
        interrupted BOOLEAN, power_source VARCHAR, summary VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS configs (
        run_id VARCHAR, config_id INTEGER, label VARCHAR, provider VARCHAR, precision VARCHAR,
        batch INTEGER, seq_len INTEGER, concurrency INTEGER, status VARCHAR, error VARCHAR,
        load_seconds DOUBLE, first_inference_seconds DOUBLE, samples INTEGER,
        p50 DOUBLE, p90 DOUBLE, p95 DOUBLE, p99 DOUBLE, p999 DOUBLE, mean DOUBLE, stddev DOUBLE,
        min DOUBLE, max DOUBLE, throughput_per_second DOUBLE, items_per_second DOUBLE,
        measured_seconds DOUBLE, warmup_seconds DOUBLE, warmup_inferences INTEGER,
        steady BOOLEAN, peak_rss_bytes BIGINT, weight_bytes BIGINT, max_abs_diff DOUBLE,
        cosine DOUBLE, energy_joules DOUBLE, joules_per_inference DOUBLE,
        average_watts DOUBLE, peak_watts DOUBLE, power_source VARCHAR,
        PRIMARY KEY (run_id, config_id))""",
    """CREATE TABLE IF NOT EXISTS samples (
        run_id VARCHAR, config_id INTEGER, kind VARCHAR, seq INTEGER, seconds DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS operators (
        run_id VARCHAR, node VARCHAR, op_type VARCHAR, provider VARCHAR, calls INTEGER,
        total_seconds DOUBLE, mean_seconds DOUBLE, median_seconds DOUBLE, share DOUBLE,
        output_bytes BIGINT,
        activation_bytes BIGINT, parameter_bytes BIGINT)""",
    """CREATE TABLE IF NOT EXISTS power (
        run_id VARCHAR, t_seconds DOUBLE, watts DOUBLE, source VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS generations (
        run_id VARCHAR, prompt_tokens INTEGER, new_tokens INTEGER, batch INTEGER, runs INTEGER,
        ttft_p50 DOUBLE, ttft_p99 DOUBLE, itl_p50 DOUBLE, itl_p99 DOUBLE,
        prefill_seconds DOUBLE, decode_seconds DOUBLE, tokens_per_second DOUBLE,
        decode_tokens_per_second DOUBLE, kv_cache_bytes BIGINT, joules_per_token DOUBLE)""",
]


class StoreError(Exception):
    """The store cannot do what was asked (unknown run, unreadable file): one line for the user."""


def default_path() -> Path:
    """``$ORTEL_DB``, else ``runs.duckdb`` in the user data directory."""
    if env := os.environ.get("ORTEL_DB"):
        return Path(env)
    try:
        from platformdirs import user_data_path

        return user_data_path("ortel", appauthor=False) / "runs.duckdb"
    except ImportError:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "ortel" / "runs.duckdb"


def is_duckdb(path: Path) -> bool:
    """DuckDB files carry the magic bytes "DUCK" after an 8-byte checksum."""
    try:
        with open(path, "rb") as f:
            return f.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def _ts(epoch: float | None) -> datetime | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


def _epoch(dt: datetime | None) -> float | None:
    return None if dt is None else dt.replace(tzinfo=timezone.utc).timestamp()


class Store:
    def __init__(self, path: Path, read_only: bool = False) -> None:
        try:
            import duckdb
        except ImportError:
            raise StoreError(
                "the results store needs duckdb: pip install 'ortel[profile]'"
            ) from None
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"{self.path}: no results store here yet (run ortel profile first)")
        if self.path.is_file() and self.path.stat().st_size > 0 and not is_duckdb(self.path):
            # DuckDB would open (and later write to) any small file: never touch someone's data.
            raise StoreError(f"{self.path}: cannot open the results store: not a DuckDB file")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.is_file() and self.path.stat().st_size > 0
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            raise StoreError(f"{self.path}: cannot open the results store: {e}") from None
        try:
            if existed:  # someone else's DuckDB file must not get our tables added to it
                self._check_schema(self.con)
            if not read_only:
                for stmt in DDL:
                    self.con.execute(stmt)
                self.con.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)],
                )
            self._check_schema(self.con)
        except StoreError as e:
            self.con.close()
            raise StoreError(f"{self.path}: {e}") from None

    @staticmethod
    def _check_schema(con: Any, what: str = "") -> None:
        try:
            v = con.execute(f"SELECT value FROM {what}meta WHERE key = 'schema_version'").fetchone()
        except Exception:
            v = None
        if v is None:
            raise StoreError("not an ortel results store")
        if int(v[0]) > SCHEMA_VERSION:
            raise StoreError(f"results store schema {v[0]} is newer than this ortel's")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------
    def save(self, result: Any, summary: dict[str, Any] | None = None) -> str:
        """Store a profiler.ProfileResult (with its raw samples); returns the run id."""
        summary = summary or result.summary()
        samples: list[tuple[int | None, str, np.ndarray]] = []
        for c in result.configs:
            if c.phase is not None:
                samples.append((c.config.id, "latency", c.phase.samples))
                samples.append((c.config.id, "warmup", c.phase.warmup_latencies))
        g = result.generation
        if g is not None:
            samples.append((None, "ttft", np.array([r.ttft for r in g.runs])))
            samples.append((None, "itl", np.array([s for r in g.runs for s in r.steps])))
        self.save_summary(summary, samples)
        return summary["run_id"]

    def save_summary(
        self, summary: dict[str, Any], samples: Iterable[tuple[int | None, str, np.ndarray]]
    ) -> None:
        run_id = summary["run_id"]
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            if con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
                raise StoreError(f"run {run_id} is already stored")
            con.execute("INSERT INTO runs VALUES (" + ",".join("?" * 19) + ")", _run_row(summary))
            rows = [_config_row(run_id, c) for c in summary["configurations"]]
            if rows:
                con.executemany(
                    "INSERT INTO configs VALUES (" + ",".join("?" * len(rows[0])) + ")", rows
                )
            for config_id, kind, arr in samples:
                self._insert_samples(run_id, config_id, kind, np.asarray(arr, dtype=np.float64))
            ops = summary.get("operators") or {}
            orow = [
                (run_id, n["node"], n["op_type"], n["provider"], n["calls"], n["total_seconds"],
                 n["mean_seconds"], n.get("median_seconds"), n["share"], n["output_bytes"],
                 n["activation_bytes"],
                 n["parameter_bytes"])
                for n in ops.get("nodes", [])
            ]  # fmt: skip
            if orow:
                con.executemany("INSERT INTO operators VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", orow)
            power = summary.get("power") or {}
            prow = [(run_id, p["t"], p["watts"], power.get("source")) for p in power["timeline"]]
            if prow:
                con.executemany("INSERT INTO power VALUES (?,?,?,?)", prow)
            if g := summary.get("generation"):
                con.execute(
                    "INSERT INTO generations VALUES (" + ",".join("?" * 15) + ")",
                    _generation_row(run_id, g),
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _insert_samples(self, run_id: str, config_id: int | None, kind: str, a: np.ndarray):
        if not a.size:
            return
        batch = {"seq": np.arange(a.size, dtype=np.int32), "seconds": a}  # noqa: F841
        # DuckDB scans the dict of numpy arrays in place: no per-row Python objects.
        self.con.execute(
            "INSERT INTO samples SELECT ?, ?, ?, seq, seconds FROM batch",
            [run_id, config_id, kind],
        )

    # --- reading ---------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The run id ``ref`` names (see the module docstring), or StoreError."""
        ref = ref.strip()
        if m := re.fullmatch(r"latest(?:~(\d+))?", ref):
            n = int(m.group(1) or 0)
            row = self.con.execute(
                "SELECT run_id FROM runs ORDER BY started DESC, run_id LIMIT 1 OFFSET ?", [n]
            ).fetchone()
            if row is None:
                raise StoreError(f"{ref}: the store has {self.count()} run(s)")
            return row[0]
        if ref.startswith("label:"):
            row = self.con.execute(
                "SELECT run_id FROM runs WHERE label = ? ORDER BY started DESC LIMIT 1",
                [ref[6:]],
            ).fetchone()
            if row is None:
                raise StoreError(f"{ref}: no run with that label")
            return row[0]
        if len(ref) < 4 or not re.fullmatch(r"[0-9a-f]+", ref):
            raise StoreError(
                f"{ref!r}: not a run id (give an id or a prefix of at least 4 hex digits, "
                "latest, latest~N or label:NAME)"
            )
        rows = self.con.execute(
            "SELECT run_id FROM runs WHERE starts_with(run_id, ?)", [ref]
        ).fetchall()
        if not rows:
            raise StoreError(f"{ref}: no such run")
        if len(rows) > 1:
            raise StoreError(f"{ref}: ambiguous, matches {len(rows)} runs")
        return rows[0][0]

    def count(self) -> int:
        row = self.con.execute("SELECT count(*) FROM runs").fetchone()
        assert row is not None  # an aggregate without GROUP BY always returns one row
        return row[0]

    def list(self, limit: int | None = None, model: str | None = None) -> list[dict[str, Any]]:
        sql = """SELECT r.run_id, r.started, r.label, r.host, r.model_name, r.providers,
                        r.interrupted, c.p50, c.p99, c.throughput_per_second,
                        (SELECT count(*) FROM configs x WHERE x.run_id = r.run_id) AS configs
                 FROM runs r LEFT JOIN configs c
                   ON c.run_id = r.run_id AND c.config_id = r.baseline"""
        params: list[Any] = []
        if model:
            sql += " WHERE r.model_name = ?"
            params.append(model)
        sql += " ORDER BY r.started DESC, r.run_id"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        cur = self.con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def summary(self, run_id: str) -> dict[str, Any]:
        row = self.con.execute("SELECT summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise StoreError(f"{run_id}: no such run")
        return json.loads(row[0])

    def samples(self, run_id: str, config_id: int | None, kind: str = "latency") -> np.ndarray:
        cond = "config_id IS NULL" if config_id is None else "config_id = ?"
        params: list[Any] = [run_id, kind] + ([] if config_id is None else [config_id])
        rows = self.con.execute(
            f"SELECT seconds FROM samples WHERE run_id = ? AND kind = ? AND {cond} ORDER BY seq",
            params,
        ).fetchnumpy()
        return np.asarray(rows["seconds"], dtype=np.float64)

    # builtins.list: in the class body from here on, `list` is the method above.
    def configs(self, run_id: str) -> builtins.list[dict[str, Any]]:
        cur = self.con.execute(
            "SELECT * FROM configs WHERE run_id = ? ORDER BY config_id", [run_id]
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    # --- export and import -----------------------------------------------------------------
    def export(self, run_ids: Sequence[str], fmt: str, out: Path) -> builtins.list[Path]:
        """CSV or Parquet: a directory with one file per table; JSON: one file, re-importable."""
        if fmt == "json":
            doc = {
                "format": EXPORT_FORMAT,
                "version": SCHEMA_VERSION,
                "runs": [self._export_run(r) for r in run_ids],
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, default=str))
            return [out]
        if fmt not in ("csv", "parquet"):
            raise StoreError(f"unknown export format {fmt!r} (csv, json, parquet)")
        out.mkdir(parents=True, exist_ok=True)
        self.con.execute("CREATE OR REPLACE TEMP TABLE export_ids (run_id VARCHAR)")
        self.con.executemany("INSERT INTO export_ids VALUES (?)", [(r,) for r in run_ids])
        written = []
        opts = "(HEADER)" if fmt == "csv" else "(FORMAT PARQUET)"
        for table in TABLES:
            path = out / f"{table}.{fmt}"
            cols = "* EXCLUDE (summary)" if table == "runs" and fmt == "csv" else "*"
            # Paths cannot be bound as parameters in COPY: quote them as SQL string literals.
            target = "'" + str(path).replace("'", "''") + "'"
            self.con.execute(
                f"COPY (SELECT {cols} FROM {table} WHERE run_id IN "
                f"(SELECT run_id FROM export_ids)) TO {target} {opts}"
            )
            written.append(path)
        return written

    def _export_run(self, run_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary(run_id), "samples": []}
        cur = self.con.execute(
            "SELECT config_id, kind, list(seconds ORDER BY seq) FROM samples WHERE run_id = ? "
            "GROUP BY config_id, kind ORDER BY config_id, kind",
            [run_id],
        )
        for config_id, kind, values in cur.fetchall():
            out["samples"].append({"config_id": config_id, "kind": kind, "seconds": values})
        return out

    def import_files(self, paths: Sequence[Path]) -> tuple[int, int]:
        """Merge runs from exports (.json), other stores (.duckdb) or Parquet export
        directories; runs already here are skipped. Returns (imported, skipped)."""
        imported = skipped = 0
        for p in paths:
            p = Path(p)
            if not p.exists():
                raise StoreError(f"{p}: no such file")
            if p.is_dir():
                i, s = self._import_dir(p)
            elif p.suffix.lower() == ".json":
                i, s = self._import_json(p)
            else:
                i, s = self._import_db(p)
            imported += i
            skipped += s
        return imported, skipped

    def _import_json(self, path: Path) -> tuple[int, int]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{path}: not a readable JSON export ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            raise StoreError(f"{path}: not an ortel runs export (ortel runs export --format json)")
        if int(doc.get("version", 0)) > SCHEMA_VERSION:
            raise StoreError(f"{path}: export version {doc['version']} is newer than this ortel")
        imported = skipped = 0
        for run in doc.get("runs", []):
            try:
                summary = run["summary"]
                samples = [
                    (s["config_id"], s["kind"], np.asarray(s["seconds"], dtype=np.float64))
                    for s in run["samples"]
                ]
                run_id = summary["run_id"]
            except (KeyError, TypeError, ValueError) as e:
                raise StoreError(f"{path}: malformed run ({type(e).__name__}: {e})") from None
            if self._has(run_id):
                skipped += 1
                continue
            try:
                self.save_summary(summary, samples)
            except (KeyError, TypeError) as e:
                raise StoreError(f"{path}: malformed run ({type(e).__name__}: {e})") from None
            imported += 1
        return imported, skipped

    def _has(self, run_id: str) -> bool:
        return bool(self.con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone())

    def _merge_from(self, source: dict[str, str]) -> tuple[int, int]:
        """Copy runs absent here from ``source`` (table -> SQL relation) into this store."""
        con = self.con
        new = [
            r[0]
            for r in con.execute(
                f"SELECT run_id FROM {source['runs']} WHERE run_id NOT IN (SELECT run_id FROM runs)"
            ).fetchall()
        ]
        row = con.execute(f"SELECT count(*) FROM {source['runs']}").fetchone()
        assert row is not None  # an aggregate without GROUP BY always returns one row
        total = row[0]
        if new:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("CREATE OR REPLACE TEMP TABLE import_ids (run_id VARCHAR)")
                con.executemany("INSERT INTO import_ids VALUES (?)", [(r,) for r in new])
                for table in TABLES:
                    if table in source:
                        con.execute(
                            f"INSERT INTO {table} BY NAME SELECT * FROM {source[table]} "
                            "WHERE run_id IN (SELECT run_id FROM import_ids)"
                        )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(new), total - len(new)

    def _import_db(self, path: Path) -> tuple[int, int]:
        import duckdb

        if not is_duckdb(path):
            raise StoreError(
                f"{path}: not a results store or JSON export (a .duckdb store, a .json export "
                "or a Parquet export directory)"
            )
        lit = "'" + str(path).replace("'", "''") + "'"
        try:
            self.con.execute(f"ATTACH {lit} AS other (READ_ONLY)")
        except duckdb.Error as e:
            raise StoreError(f"{path}: not a results store or JSON export ({e})") from None
        try:
            self._check_schema(self.con, "other.")
            return self._merge_from({t: f"other.{t}" for t in TABLES})
        except StoreError as e:
            raise StoreError(f"{path}: {e}") from None
        finally:
            self.con.execute("DETACH other")

    def _import_dir(self, path: Path) -> tuple[int, int]:
        import duckdb

        source = {}
        for table in TABLES:
            f = path / f"{table}.parquet"
            if f.is_file():
                source[table] = "read_parquet('" + str(f).replace("'", "''") + "')"
        if "runs" not in source:
            raise StoreError(
                f"{path}: no runs.parquet (import a Parquet export directory, a .json export or "
                "a .duckdb store)"
            )
        try:
            return self._merge_from(source)
        except duckdb.Error as e:
            raise StoreError(f"{path}: cannot import ({e})") from None


def _run_row(s: dict[str, Any]) -> list[Any]:
    h, m = s.get("host", {}), s.get("model", {})
    providers = ",".join(dict.fromkeys(c["provider"] for c in s["configurations"]))
    return [
        s["run_id"],
        _ts(s.get("started")),
        _ts(s.get("finished")),
        s.get("label"),
        h.get("host"),
        h.get("cpu_model"),
        h.get("cores"),
        h.get("os"),
        h.get("python"),
        h.get("onnxruntime_version"),
        h.get("ortel_version"),
        m.get("name"),
        m.get("path"),
        m.get("sha256"),
        providers,
        s.get("baseline"),
        bool(s.get("interrupted")),
        (s.get("power") or {}).get("source"),
        json.dumps(s),
    ]


def _config_row(run_id: str, c: dict[str, Any]) -> list[Any]:
    lat = c["latency_seconds"]
    w = c.get("warmup") or {}
    acc = c.get("accuracy") or {}
    e = c.get("energy") or {}
    mem = c.get("memory") or {}
    return [
        run_id,
        c["id"],
        c["label"],
        c["provider"],
        c["precision"],
        c["batch"],
        c["seq_len"],
        c["concurrency"],
        c["status"],
        c["error"],
        c["load_seconds"],
        c["first_inference_seconds"],
        c["samples"],
        *(lat[k] for k in STATS),
        c["throughput_per_second"],
        c["items_per_second"],
        c["measured_seconds"],
        w.get("seconds"),
        w.get("inferences"),
        w.get("steady"),
        mem.get("peak_rss_bytes"),
        mem.get("model_weight_bytes"),
        acc.get("max_abs_diff"),
        acc.get("cosine"),
        e.get("joules"),
        e.get("joules_per_inference"),
        e.get("average_watts"),
        e.get("peak_watts"),
        e.get("source"),
    ]


def _generation_row(run_id: str, g: dict[str, Any]) -> list[Any]:
    t, i = g["time_to_first_token_seconds"], g["inter_token_latency_seconds"]
    return [
        run_id,
        g["prompt_tokens"],
        g["new_tokens"],
        g["batch"],
        g["runs"],
        t["p50"],
        t["p99"],
        i["p50"],
        i["p99"],
        g["prefill_seconds"],
        g["decode_seconds"],
        g["tokens_per_second"],
        g["decode_tokens_per_second"],
        g["kv_cache_bytes"],
        g["joules_per_token"],
    ]


def started_epoch(row: dict[str, Any]) -> float | None:
    return _epoch(row.get("started"))
