"""ortel's hwmon collector against the real node_exporter, run on the same sysfs trees.

For each fixture tree (the base ``sysfs/`` and the two whole hosts of ``hosts/README.md``) the
Debian ``prometheus-node-exporter`` runs with only its hwmon collector and ``--path.sysfs`` at the
tree; its scrape is parsed with ``prometheus_client.parser`` and set beside ortel's
``HwmonCollector`` readings over the same tree:

* every ``node_hwmon_*`` sample is either compared (``COMPARED``: the kinds ortel exports) or
  named in ``NOT_EXPORTED`` with the reason ortel leaves it out: an unknown series fails the test,
  so nothing is skipped silently;
* every compared sample must exist in ortel under the mapped chip and the same sensor, with the
  same value (node_exporter multiplies by 0.001 where ortel divides by 1000, so 84.85 may come
  back as 84.85000000000001: compared to 1e-12 relative);
* the other way round, every ortel hwmon reading must have its node_exporter sample (ortel adds
  nothing node_exporter would not show), and ortel's ``label`` label equals node_exporter's
  ``node_hwmon_sensor_label`` (empty where node_exporter has none).

The one node_exporter sample of a compared kind that ortel lacks, ``temp0`` on a thermal zone's
chip, is accounted for by name (``thermal_zone_temp0``) and checked to be the zone's own ``temp``
file, the same value as the chip's ``temp1`` ortel has.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import free_port, http_get
from helpers import FIXTURES
from prometheus_client.parser import text_string_to_metric_families

from ortel.collectors import hwmon
from ortel.core import catalog

NODE_EXPORTER = ("prometheus-node-exporter", "node_exporter")  # Debian's name, upstream's name
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends prometheus-node-exporter  (or: bash .ci/test)"
)

TREES = {
    "sysfs": FIXTURES / "sysfs",
    "epyc-server": FIXTURES / "hosts" / "epyc-server" / "sysfs",
    "laptop": FIXTURES / "hosts" / "laptop" / "sysfs",
}

# Chip naming. node_exporter (>= 1.4) labels a chip by where its device sits, not by its name:
# hwmonN/device resolved, then "<parent dir>_<device dir>" (lower-cased, every character outside
# [a-z0-9:_] made "_"), e.g. devices/platform/coretemp.0 -> platform_coretemp_0,
# .../0000:00:18.3 under pci0000:00 -> pci0000:00_0000:00:18_3; a chip with no device link is
# its hwmonN. The chip's `name` goes to a separate info series,
# node_hwmon_chip_names{chip, chip_name} (cleaned the same way: BAT0 -> bat0).
# ortel labels a chip by its `name` as the driver wrote it, with the device's directory appended
# only where two chips share a name (k10temp_0000:00:18.3, nvme_nvme0), and hwmonN for a chip
# with neither name nor device. The table below is that mapping, tree by tree; the test checks it
# is one-to-one onto both sides' chips and agrees with node_hwmon_chip_names.
CHIPS: dict[str, dict[str, str]] = {  # tree -> node_exporter chip -> ortel chip
    "sysfs": {
        "platform_coretemp_0": "coretemp",
        "thermal_thermal_zone0": "acpitz",
        "nvme_nvme0": "nvme_nvme0",
        "nvme_nvme1": "nvme_nvme1",
        "platform_nct6775_656": "nct6798",  # driver nct6775, chip name nct6798
        "lnxsybus:00_acpi000d:00": "power_meter",
        "platform_amd_energy_0": "amd_energy",
        "0000:00:01_0_0000:01:00_0": "amdgpu",  # parent is the PCIe bridge 0000:00:01.0
    },
    "epyc-server": {
        "pci0000:00_0000:00:18_3": "k10temp_0000:00:18.3",
        "pci0000:00_0000:00:19_3": "k10temp_0000:00:19.3",
        "platform_amd_energy_0": "amd_energy",
        "nvme_nvme0": "nvme",
        "hwmon4": "hwmon4",  # neither name nor device: both call it by its directory
        "lnxsybus:00_acpi000d:00": "power_meter",
    },
    "laptop": {
        "thermal_thermal_zone0": "acpitz",
        "power_supply_bat0": "BAT0",
        "power_supply_ucsi_source_psy_usbc000:001": "ucsi_source_psy_USBC000:001",
        "platform_thinkpad_hwmon": "thinkpad",
        "platform_coretemp_0": "coretemp",
        "pci0000:00_0000:00:14_3": "iwlwifi_1",
        "nvme_nvme0": "nvme",
    },
}

# node_exporter sample name -> ortel metric: the hwmon attributes ortel exports, same base units
# (°C, V, A, W, J, rpm). node_exporter names tempN_input node_hwmon_temp_celsius, tempN_max
# node_hwmon_temp_max_celsius, and so on.
COMPARED: dict[str, catalog.MetricDef] = {
    "node_hwmon_temp_celsius": catalog.TEMPERATURE,
    "node_hwmon_temp_min_celsius": catalog.TEMPERATURE_MIN,
    "node_hwmon_temp_max_celsius": catalog.TEMPERATURE_MAX,
    "node_hwmon_temp_crit_celsius": catalog.TEMPERATURE_CRITICAL,
    "node_hwmon_in_volts": catalog.VOLTAGE,
    "node_hwmon_in_min_volts": catalog.VOLTAGE_MIN,
    "node_hwmon_in_max_volts": catalog.VOLTAGE_MAX,
    "node_hwmon_in_crit_volts": catalog.VOLTAGE_CRITICAL,
    "node_hwmon_curr_amps": catalog.CURRENT,
    "node_hwmon_curr_min_amps": catalog.CURRENT_MIN,
    "node_hwmon_curr_max_amps": catalog.CURRENT_MAX,
    "node_hwmon_curr_crit_amps": catalog.CURRENT_CRITICAL,
    "node_hwmon_power_watt": catalog.HWMON_POWER,
    "node_hwmon_power_average_watt": catalog.HWMON_POWER_AVERAGE,
    "node_hwmon_power_max_watt": catalog.HWMON_POWER_MAX,
    "node_hwmon_power_crit_watt": catalog.HWMON_POWER_CRITICAL,
    "node_hwmon_energy_joule_total": catalog.HWMON_ENERGY,
    "node_hwmon_fan_rpm": catalog.FAN_SPEED,
    "node_hwmon_fan_min_rpm": catalog.FAN_SPEED_MIN,
    "node_hwmon_fan_max_rpm": catalog.FAN_SPEED_MAX,
}

# node_hwmon_* series ortel deliberately does not export (full-match pattern -> why). A series
# that is neither here nor in COMPARED fails the test.
NOT_EXPORTED: dict[str, str] = {
    r"node_hwmon_chip_names": "info series: ortel's chip label is the name itself",
    r"node_hwmon_sensor_label": "info series: ortel puts the label on each reading (checked)",
    r"node_hwmon_[a-z]+(_[a-z]+)*_alarm(_celsius|_volts|_amps|_watt|_rpm)?": "alarm flags",
    r"node_hwmon_[a-z]+(_[a-z]+)*_hyst_(celsius|volts|amps|watt)": "hysteresis (*_hyst)",
    r"node_hwmon_pwm(_[a-z_]+)?": "fan PWM duty and mode (pwmN, pwmN_enable)",
    r"node_hwmon_(in_average_volts|curr_average_amps)": "*_average of in/curr",
    r"node_hwmon_[a-z]+_beep_enabled": "beep flags",
    r"node_hwmon_fan_(enable|pulses)": "fan on/off and pulses per revolution",
    r"node_hwmon_temp_type": "sensor type code (thermistor, diode, ...)",
    r"node_hwmon_temp_emergency_celsius": "emergency threshold (beyond crit; not exported)",
    r"node_hwmon_power_cap(_min|_max)?_watt": "power cap settings (amdgpu), not measurements",
    r"node_hwmon_power_average_interval(_min|_max)?_seconds": "meter averaging interval",
    r"node_hwmon_power_(accuracy|is_battery_watt)": "power meter metadata",
}

RTOL = 1e-12
# tree -> (samples compared and equal, thermal-zone temp0 samples accounted for): what the
# comparison covers, so a tree that stopped being compared (or a chip that vanished) shows.
EXPECTED = {"sysfs": (43, 1), "epyc-server": (59, 0), "laptop": (36, 1)}


def clean(name: str) -> str:
    """node_exporter's cleanMetricName: how it spells chip names in node_hwmon_chip_names."""
    return re.sub(r"[^a-z0-9:_]", "_", name.lower()).strip("_")


def node_exporter_binary() -> str:
    for name in NODE_EXPORTER:
        if path := shutil.which(name):
            return path
    # Never a skip: without the peer this comparison proves nothing, so it must not pass quietly.
    pytest.fail(
        f"node_exporter not found on PATH (looked for {', '.join(NODE_EXPORTER)}); "
        f"install it with: {INSTALL_HINT}",
        pytrace=False,
    )


@contextmanager
def node_exporter(sysfs: Path, work: Path) -> Iterator[str]:
    """A node_exporter with only hwmon on, reading `sysfs`; yields its scrape URL."""
    (work / "proc").mkdir()  # hwmon reads no procfs: an empty one keeps the host's out
    url = f"http://127.0.0.1:{free_port()}/metrics"
    argv = [
        node_exporter_binary(),
        f"--path.sysfs={sysfs}",
        f"--path.procfs={work / 'proc'}",
        "--collector.disable-defaults",
        "--collector.hwmon",
        "--web.disable-exporter-metrics",
        f"--web.listen-address={url.split('/')[2]}",
    ]
    log = work / "node_exporter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 15
        while True:  # ready once /metrics answers with the hwmon collector's result in it
            if proc.poll() is not None:
                pytest.fail(f"node_exporter exited {proc.returncode}: {argv}\n{log.read_text()}")
            try:
                status, _, body = http_get(url, timeout=1.0)
            except (OSError, urllib.error.URLError):
                status, body = 0, ""
            if status == 200 and 'node_scrape_collector_success{collector="hwmon"}' in body:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"node_exporter not ready at {url}: {argv}\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scrape(url: str) -> dict[str, dict[tuple[str, ...], float]]:
    """{sample name: {(chip, sensor[, label]): value}} of one scrape."""
    status, _, body = http_get(url)
    assert status == 200, body
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "node_hwmon_chip_names":
                key: tuple[str, ...] = (s.labels["chip"], s.labels["chip_name"])
            elif s.name == "node_hwmon_sensor_label":
                key = (s.labels["chip"], s.labels["sensor"], s.labels["label"])
            elif s.name.startswith("node_hwmon_"):
                assert set(s.labels) == {"chip", "sensor"}, s
                key = (s.labels["chip"], s.labels["sensor"])
            else:
                key = tuple(f"{k}={v}" for k, v in sorted(s.labels.items()))
            assert key not in out.setdefault(s.name, {}), f"{s.name}{key} twice"
            out[s.name][key] = s.value
    return out


def thermal_zone_temp0(chip_dir: Path, sensor: str) -> Path | None:
    """The thermal zone's own `temp` file where node_exporter shows it as sensor temp0.

    A thermal zone's hwmon (acpitz) has the zone as its device; node_exporter reads device/ too,
    and its file pattern <type><number>_<property> reads the zone's bare `temp` as temp0 with no
    property, i.e. node_hwmon_temp_celsius{sensor="temp0"}. It is not an hwmon attribute (hwmon
    temperatures count from 1; the zone's temp is what the chip's temp1_input shows), so ortel
    does not export it.
    """
    zone_temp = chip_dir / "device" / "temp"
    if sensor != "temp0" or not zone_temp.is_file() or not (chip_dir / "device/type").is_file():
        return None
    if any(
        p.name.startswith("temp0_") for d in (chip_dir, chip_dir / "device") for p in d.iterdir()
    ):
        return None  # a real temp0 attribute
    return zone_temp


@pytest.mark.parametrize("tree", TREES)
def test_hwmon_equals_node_exporter(tree, tmp_path):
    sysfs = TREES[tree]
    chips = CHIPS[tree]
    with node_exporter(sysfs, tmp_path) as url:
        ne = scrape(url)
    assert ne["node_scrape_collector_success"] == {("collector=hwmon",): 1.0}

    ortel_chips = {c.label: c.attrs for c in hwmon.discover(sysfs)}
    ortel: dict[tuple[str, str, str], float] = {}  # (metric, chip, sensor) -> value
    ortel_labels: dict[tuple[str, str], str] = {}  # (chip, sensor) -> label
    for r in hwmon.HwmonCollector(sysfs).collect():
        if r.metric is catalog.POWER:
            continue  # ortel's host-power view (labels source/device/zone): no hwmon peer
        lab = dict(zip(r.metric.labels, r.labels))
        key = (r.metric.name, lab["chip"], lab["sensor"])
        assert key not in ortel, key
        assert isinstance(r.value, (int, float))
        ortel[key] = float(r.value)
        assert ortel_labels.setdefault((lab["chip"], lab["sensor"]), lab["label"]) == lab["label"]

    # The chip mapping: one-to-one onto node_exporter's chips and ortel's, names agreeing.
    ne_chips = {
        key[0] for name, series in ne.items() if name.startswith("node_hwmon_") for key in series
    }
    assert set(chips) == ne_chips, "node_exporter chips not in CHIPS (or gone)"
    assert sorted(chips.values()) == sorted(ortel_chips), "ortel chips not in CHIPS (or gone)"
    for (ne_chip, ne_name), _ in ne["node_hwmon_chip_names"].items():
        name = (ortel_chips[chips[ne_chip]] / "name").read_text()
        assert ne_name == clean(name), (ne_chip, ne_name, chips[ne_chip])
        ortel_chip = chips[ne_chip]
        assert ortel_chip == name.strip() or ortel_chip.startswith(name.strip() + "_"), ortel_chip
    named = {n for n, o in chips.items() if (ortel_chips[o] / "name").is_file()}
    assert {chip for chip, _ in ne["node_hwmon_chip_names"]} == named
    to_ne = {o: n for n, o in chips.items()}

    unclassified = sorted(
        name
        for name in ne
        if name.startswith("node_hwmon_")
        and name not in COMPARED
        and not any(re.fullmatch(p, name) for p in NOT_EXPORTED)
    )
    assert not unclassified, (
        f"node_exporter series neither compared nor NOT_EXPORTED: {unclassified}"
    )

    matched = 0
    missing: list[str] = []  # node_exporter samples ortel lacks
    wrong: list[str] = []  # ... or has with another value
    accounted: list[str] = []  # the thermal_zone_temp0 samples
    for ne_name, metric in COMPARED.items():
        for (ne_chip, sensor), value in ne.get(ne_name, {}).items():
            where = f'{ne_name}{{chip="{ne_chip}",sensor="{sensor}"}} {value}'
            key = (metric.name, chips[ne_chip], sensor)
            if key not in ortel:
                zone_temp = thermal_zone_temp0(ortel_chips[chips[ne_chip]], sensor)
                if zone_temp is not None and metric is catalog.TEMPERATURE:
                    assert value == int(zone_temp.read_text()) * 0.001, where
                    assert math.isclose(ortel[(metric.name, chips[ne_chip], "temp1")], value)
                    accounted.append(where)
                else:
                    missing.append(f"{where}: ortel has no {metric.name}{key[1:]}")
                continue
            if not math.isclose(ortel[key], value, rel_tol=RTOL):
                wrong.append(f"{where}: ortel {metric.name}{key[1:]} = {ortel[key]!r}")
                continue
            matched += 1
    # ortel -> node_exporter: nothing ortel shows is absent from node_exporter.
    ne_names = {m.name: n for n, m in COMPARED.items()}
    extra = [
        f"ortel {m}{{chip={c!r},sensor={s!r}}} = {v}"
        for (m, c, s), v in ortel.items()
        if (to_ne[c], s) not in ne.get(ne_names[m], {})
    ]
    ne_label = {(c, s): lab for c, s, lab in ne.get("node_hwmon_sensor_label", {})}
    labels_differ = [
        f"{c}/{s}: ortel {lab!r}, node_exporter {ne_label.get((to_ne[c], s), '')!r}"
        for (c, s), lab in ortel_labels.items()
        if lab != ne_label.get((to_ne[c], s), "")
    ]
    print(
        f"{tree}: {matched} node_exporter samples matched in ortel, "
        f"{len(accounted)} thermal-zone temp0 accounted for: {accounted}"
    )
    for problem in (missing, wrong, extra, labels_differ):
        for line in problem:
            print(line)
    assert not missing, "node_exporter sensors ortel lacks:\n" + "\n".join(missing)
    assert not wrong, "values that differ:\n" + "\n".join(wrong)
    assert not extra, "ortel readings node_exporter does not have:\n" + "\n".join(extra)
    assert not labels_differ, "sensor labels that differ:\n" + "\n".join(labels_differ)
    assert matched == len(ortel)  # every ortel reading was matched by exactly one sample
    assert (matched, len(accounted)) == EXPECTED[tree]
