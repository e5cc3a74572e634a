"""The Helm chart (helm/ortel): linted and rendered by a real helm, every manifest validated
against Kubernetes 1.33's schemas (kubernetes-validate, strict) and the Prometheus Operator CRD
schemas, for the default values and for a values file that turns every option on. The
PrometheusRule carries exactly the rules `ortel rules --format prometheusrule` prints.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from harness import TOOLS_BIN, require_tool

from ortel.exporter.cli import cli
from ortel.exporter.config import RULE_OPTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "ortel"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
DASHBOARDS = ROOT / "dashboards"
CRD_VALIDATE = Path(__file__).parent / "k8s" / "crd_validate.mjs"
NODE_MODULES = TOOLS_BIN.parent / "node" / "node_modules"
K8S_VERSION = "1.33.0"
CRD_GROUP = "monitoring.coreos.com/"
NAMESPACE = "ml"

VALUES = {"default": [], "all-options": ["-f", str(ALL_OPTIONS)]}


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm")


def template(helm: str, *args: str) -> list[dict[str, Any]]:
    res = run([helm, "template", "t", str(CHART), "--namespace", NAMESPACE, *args])
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    return {name: template(helm, *args) for name, args in VALUES.items()}


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


def daemon_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]


def crd_validate(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = require_tool("node")
    if not NODE_MODULES.is_dir():
        require_tool("@kubernetes-models/prometheus-operator in .cache/tools/node (bash .ci/test)")
    return run([node, str(CRD_VALIDATE), str(NODE_MODULES)], input=json.dumps(docs))


# --- lint, render, validate ----------------------------------------------------------------------
@pytest.mark.parametrize("values", VALUES)
def test_helm_lint_strict(helm, values):
    res = run([helm, "lint", "--strict", str(CHART), *VALUES[values]])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


def test_renders_every_resource(rendered):
    assert sorted(d["kind"] for d in rendered["default"]) == sorted(
        ["ServiceAccount", "ConfigMap", "ConfigMap", "Service", "DaemonSet"]
    )
    assert sorted(d["kind"] for d in rendered["all-options"]) == sorted(
        ["ServiceAccount", "ConfigMap", "ConfigMap", "Service", "DaemonSet", "ServiceMonitor"]
        + ["PodMonitor", "PrometheusRule", "Job", "Job"]
    )


@pytest.mark.parametrize("values", VALUES)
def test_every_manifest_validates_against_kubernetes_1_33(rendered, values):
    checked = 0
    for doc in rendered[values]:
        if doc["apiVersion"].startswith(CRD_GROUP):
            continue  # not a built-in kind: validated against the CRD schema below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("values", VALUES)
def test_prometheus_operator_resources_validate_against_their_crds(rendered, values):
    crs = [d for d in rendered[values] if d["apiVersion"].startswith(CRD_GROUP)]
    if values == "default":
        assert crs == []  # off by default: no CRD needed to install the chart
        return
    res = crd_validate(crs)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [
        "ok",
        "PodMonitor/ortel-telemetry",
        "ok",
        "PrometheusRule/ortel-telemetry",
        "ok",
        "ServiceMonitor/ortel-telemetry",
    ]


def test_validators_reject_broken_manifests(rendered):
    """Neither validator is vacuous: a wrong type in each kind of resource is caught."""
    ds = copy.deepcopy(only(rendered["all-options"], "DaemonSet"))
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)
    ds = copy.deepcopy(only(rendered["all-options"], "DaemonSet"))
    ds["spec"]["template"]["spec"]["hostPathVolumes"] = []  # strict: unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)
    sm = copy.deepcopy(only(rendered["all-options"], "ServiceMonitor"))
    sm["spec"]["endpoints"][0]["interval"] = "30 seconds"
    res = crd_validate([sm])
    assert res.returncode == 1 and "interval must match pattern" in res.stdout, res.stdout
    pr = copy.deepcopy(only(rendered["all-options"], "PrometheusRule"))
    pr["spec"]["groups"][-1]["rules"][0]["for"] = "10 minutes"
    res = crd_validate([pr])
    assert res.returncode == 1 and "for must match pattern" in res.stdout, res.stdout


# --- what the manifests say ---------------------------------------------------------------------
def ortel_rules_prometheusrule() -> dict[str, Any]:
    res = CliRunner().invoke(cli, ["rules", "--format", "prometheusrule"], env=RULES_ENV_UNSET)
    assert res.exit_code == 0, res.output
    return dict(yaml.safe_load(res.output))


# SLO settings in the environment would change `ortel rules`' output, not the chart's copy.
RULES_ENV_UNSET: dict[str, str | None] = {
    "ORTEL_CONFIG": None,
    **{o.envvar: None for o in RULE_OPTIONS},
}


def test_prometheusrule_has_exactly_the_rules_of_ortel_rules(helm):
    """`--set prometheusRule.enabled=true` alone: the rules `ortel rules --format
    prometheusrule` prints, in the release's namespace, valid against the CRD schema."""
    docs = template(helm, "--set", "prometheusRule.enabled=true")
    pr = only(docs, "PrometheusRule")
    want = ortel_rules_prometheusrule()
    assert (pr["apiVersion"], pr["kind"]) == (want["apiVersion"], want["kind"])
    assert pr["spec"] == want["spec"]
    assert sum(len(g["rules"]) for g in pr["spec"]["groups"]) > 30
    assert pr["metadata"]["namespace"] == NAMESPACE
    assert pr["metadata"]["labels"]["app.kubernetes.io/name"] == "ortel"
    res = crd_validate([pr])
    assert res.returncode == 0 and res.stdout.split() == ["ok", "PrometheusRule/t-ortel"], (
        res.stdout + res.stderr
    )


def test_prometheusrule_options(rendered):
    pr = only(rendered["all-options"], "PrometheusRule")
    assert pr["metadata"]["namespace"] == "monitoring"
    assert pr["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert pr["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}
    assert pr["spec"] == ortel_rules_prometheusrule()["spec"]
    assert not [d for d in rendered["default"] if d["kind"] == "PrometheusRule"]


def test_dashboards_configmap_holds_the_dashboards_for_the_grafana_sidecar(rendered):
    cms = [d for d in rendered["default"] if d["metadata"]["name"].endswith("-dashboards")]
    assert len(cms) == 1
    cm = cms[0]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    assert shipped and cm["data"] == shipped
    for text in cm["data"].values():
        assert json.loads(text)["uid"].startswith("ortel-")


def test_kubectl_builds_the_same_dashboards_configmap(rendered):
    """The documented no-Helm route (kubectl create configmap --from-file) gives the same data."""
    kubectl = require_tool("kubectl")
    files = [f"--from-file={p}" for p in sorted(DASHBOARDS.glob("*.json"))]
    res = run(
        [kubectl, "create", "configmap", "ortel-dashboards", *files]
        + ["--dry-run=client", "-o", "json"],
        env={"KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    cm = next(d for d in rendered["default"] if d["metadata"]["name"].endswith("-dashboards"))
    assert json.loads(res.stdout)["data"] == cm["data"]


# What the Secrets named in the all-options values hold (a bcrypt hash of "probe", cost 4).
SECRET_FILES = {
    "web/web-config.yml": "basic_auth_users:\n"
    "  prometheus: $2b$04$5jUE3ofPobvzlgi0t.aBNuUHZQz8.RtrgCYprll.Jfe3mzXeelWbC\n",
    "token/token": "0123456789abcdef0123456789abcdef\n",
}


@pytest.mark.parametrize("values", VALUES)
def test_daemon_args_and_config_file_are_accepted_by_ortel_serve(rendered, values, tmp_path):
    """The container's exact arguments, with the pod's mounts laid out under tmp_path, pass
    ``ortel serve --check-config``: the config file keys, the flags and the secrets' files."""
    docs = rendered[values]
    cm = next(d for d in docs if d.get("data", {}).keys() == {"ortel.yaml"})
    etc = tmp_path / "etc" / "ortel"
    (etc / "config").mkdir(parents=True)
    (etc / "config" / "ortel.yaml").write_text(cm["data"]["ortel.yaml"])
    for rel, text in SECRET_FILES.items():
        (etc / rel).parent.mkdir(exist_ok=True)
        (etc / rel).write_text(text)
    config = yaml.safe_load(cm["data"]["ortel.yaml"])
    assert config["sysfs"] == "/host/sys" and config["procfs"] == "/host/proc"
    c = daemon_container(docs)
    port = c["ports"][0]["containerPort"]
    assert config["listen"] == f":{port}"
    args = [a.replace("/etc/ortel/", f"{etc}/") for a in c["args"]]
    res = CliRunner().invoke(cli, [*args, "--check-config"])
    assert res.exit_code == 0, res.output
    assert f"listen 0.0.0.0:{port}" in res.output


def test_daemon_is_unprivileged_and_reads_the_host_read_only(rendered):
    pod = only(rendered["default"], "DaemonSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert c["securityContext"]["privileged"] is False
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host == {"sys": "/sys", "proc": "/proc", "multiproc": "/run/ortel"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["sys"]["readOnly"] is True and mounts["proc"]["readOnly"] is True
    assert c["args"][:2] == ["serve", "--config=/etc/ortel/config/ortel.yaml"]
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTP"}
    assert c["resources"]["limits"]["memory"]


def test_rapl_opt_in_adds_only_dac_read_search(rendered):
    pod = only(rendered["all-options"], "DaemonSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsUser"] == 0
    assert c["securityContext"]["privileged"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}


def test_gpu_option_selects_gpu_nodes_with_the_nvidia_runtime(rendered):
    pod = only(rendered["all-options"], "DaemonSet")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    default = only(rendered["default"], "DaemonSet")["spec"]["template"]["spec"]
    assert "runtimeClassName" not in default and "nodeSelector" not in default


def test_tls_and_auth_come_from_secrets(rendered):
    docs = rendered["all-options"]
    pod = only(docs, "DaemonSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--web-config=/etc/ortel/web/web-config.yml" in c["args"]
    assert "--bearer-token-file=/etc/ortel/token/token" in c["args"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"web": "ortel-web", "token": "ortel-token"}
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert only(docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    assert only(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["scheme"] == "https"


def test_monitors_select_the_daemon(rendered):
    docs = rendered["all-options"]
    selector = only(docs, "DaemonSet")["spec"]["selector"]["matchLabels"]
    for kind in ("ServiceMonitor", "PodMonitor"):
        mon = only(docs, kind)
        assert mon["spec"]["selector"]["matchLabels"] == selector
        assert mon["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert mon["metadata"]["namespace"] == "monitoring"
    assert only(docs, "Service")["spec"]["selector"] == selector


def test_profile_matrix_runs_one_job_per_node(rendered):
    jobs = [d for d in rendered["all-options"] if d["kind"] == "Job"]
    for job, node in zip(jobs, ["gpu-node-a", "gpu-node-b.example.internal"], strict=True):
        pod = job["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"kubernetes.io/hostname": node}
        args = pod["containers"][0]["args"]
        assert args[:2] == ["profile", "/models/resnet50.onnx"]
        assert args[args.index("--db") + 1] == f"/results/{node}.duckdb"
        assert args[args.index("--out") + 1] == f"/results/{node}"
        assert args[-4:] == ["--batch-sizes", "1,8,32", "--providers", "all"]
        assert pod["runtimeClassName"] == "nvidia"  # gpu.enabled in the all-options values
        caps = pod["containers"][0]["securityContext"]["capabilities"]
        assert caps == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}  # rapl.enabled too
        assert {"name": "results", "persistentVolumeClaim": {"claimName": "ortel-results"}} in pod[
            "volumes"
        ]


def test_profile_job_arguments_are_accepted_by_ortel_profile(rendered):
    """Parsed (not run) by the real `ortel profile` command: every flag exists, values valid."""
    import click

    job = next(d for d in rendered["all-options"] if d["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "profile"
    with click.Context(cli) as ctx:
        profile = cli.get_command(ctx, "profile")
        assert profile is not None, "ortel profile is not installed"
        sub = profile.make_context("profile", list(args[1:]), parent=ctx)
    assert sub.params["db"] == Path("/results/gpu-node-a.duckdb")
    assert sub.params["quiet"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "service.enabled=false", "--set", "serviceMonitor.enabled=true"],
            "needs service",
        ),
        (["--set", "profile.enabled=true"], "profile.enabled needs profile.nodes"),
        (["--set", "servicemonitor.enabled=true"], "additional properties 'servicemonitor'"),
        (["--set", "prometheusRule.enable=true"], "additional properties 'enable'"),
        (["--set", "port=70000"], "/port"),
    ],
)
def test_bad_values_fail_with_a_clear_message(helm, args, message):
    res = run([helm, "template", "t", str(CHART), *args])
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_chart_app_version_is_the_project_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def test_notes_render(helm, tmp_path):
    res = run(
        [helm, "install", "t", str(CHART), "--dry-run=client", "-f", str(ALL_OPTIONS)],
        env={"KUBECONFIG": "/dev/null", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert "WARNING: both a ServiceMonitor and a PodMonitor are enabled" in res.stdout
    assert "ortel runs import" in res.stdout
    assert "PrometheusRule ortel-telemetry carries" in res.stdout
    # nameOverride: telemetry names the monitors' job: the absent alert would not find it.
    assert "OrtelExporterAbsent will fire" in res.stdout
