"""The deployment files as their own tools read them: the compose demo through
docker-compose, the Kubernetes manifests through kubectl's kustomize and the Kubernetes
schemas (kubernetes-validate, offline), the systemd unit through systemd-analyze. Each
also goes through guard's own settings loader, so that what the files set is what the
guard accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.config import load_settings
from guard.policy import load_policy
from guard.secret import load_secret
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs Debian's {package})")
        pytest.skip(f"{name} not installed (Debian: {package})")
    return path


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr}"
    return r


def settings_from(env: dict[str, str], files: dict[str, Path]) -> Any:
    """guard's settings for a container's environment, its secret paths mapped to files
    here (files: path in the container → file)."""
    mapped = {k: str(files.get(v, v)) if k.endswith("_FILE") else v for k, v in env.items()}
    return load_settings(None, mapped)


# --- compose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    r = run(tool("docker-compose", "docker-compose"), "-f", str(DEPLOY / "compose.yaml"),
            "config")
    doc: dict[str, Any] = yaml.safe_load(r.stdout)
    return doc


def test_compose_demo_has_two_guards_on_a_healthy_postgresql(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"guard1", "guard2", "postgres", "prometheus", "grafana", "mailpit",
            "swaks"} <= set(services)
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    for name in ("guard1", "guard2"):
        g = services[name]
        assert g["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert g["environment"]["GUARD_UPSTREAM"] == "smtp://mailpit:1025"
    # every port is published on loopback only
    for name, s in services.items():
        for p in s.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), (name, p)
    mounts = {(s, v.split(":")[1]): Path(v.split(":")[0]) for s in ("prometheus", "grafana")
              for v in services[s]["volumes"]}
    assert mounts[("prometheus", "/etc/prometheus")] == DEPLOY / "prometheus"
    assert mounts[("grafana", "/etc/grafana/provisioning")] == DEPLOY / "grafana" / "provisioning"
    assert mounts[("grafana", "/var/lib/grafana/dashboards/guard.json")] == \
        DEPLOY / "grafana" / "guard.json"
    assert "guard_metrics_token" in [s["source"] for s in services["prometheus"]["secrets"]]


def test_compose_guards_take_their_secrets_from_files_guard_accepts(
        compose: dict[str, Any]) -> None:
    secrets = {name: Path(s["file"]) for name, s in compose["secrets"].items()}
    for path in secrets.values():
        assert path.is_file() and path.read_text().strip(), path
    files = {f"/run/secrets/{name}": path for name, path in secrets.items()}
    for name in ("guard1", "guard2"):
        service = compose["services"][name]
        env = {k: str(v) for k, v in service["environment"].items()}
        given = {s["source"] for s in service["secrets"]}
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/") and value[13:] in given, (key, value)
        assert not any(re.search(r"password|secret|token", f"{k}={v}", re.I) and
                       not k.endswith("_FILE") for k, v in env.items()), env
        settings = settings_from(env, files)
        assert settings.web.base_url == "http://127.0.0.1:8025"
        assert settings.database.url == (
            "postgresql://guard:" + secrets["db_password"].read_text().strip() +
            "@postgres:5432/guard")
        assert load_secret(settings) == bytes.fromhex(secrets["guard_secret"].read_text())
        assert (DEPLOY / next(v for v in service["volumes"] if "/etc/guard/policy" in v)
                .split(":")[0]).resolve() == (ROOT / "policies").resolve()
    assert load_policy(ROOT / "policies") is not None


# --- Kubernetes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    r = run(tool("kubectl", "kubernetes-client"), "kustomize", str(DEPLOY / "kubernetes"))
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(r.stdout)}


def test_kubernetes_objects_are_valid_against_the_schemas(
        rendered: dict[str, dict[str, Any]]) -> None:
    import kubernetes_validate

    assert set(rendered) == {"Deployment/guard", "Service/guard-smtp", "Service/guard-web",
                             "ConfigMap/guard-policy", "PodDisruptionBudget/guard",
                             "ServiceMonitor/guard"}
    for obj in rendered.values():
        if obj["kind"] != "ServiceMonitor":  # a CRD: checked below
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    # the validator does refuse what Kubernetes would
    bad = yaml.safe_load(yaml.safe_dump(rendered["Deployment/guard"]))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_guards_keep_no_state_and_are_probed_apart(
        rendered: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    deploy = rendered["Deployment/guard"]
    assert deploy["spec"]["replicas"] >= 2
    pod = deploy["spec"]["template"]["spec"]
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10025  # the image's user
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # no local state: no persistent volume, host path or SQLite
    for v in pod["volumes"]:
        assert set(v) & {"secret", "configMap", "emptyDir"}, v
    # liveness never asks the database (an outage must not restart every guard);
    # readiness does (a guard that cannot commit is taken out of the Service)
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the environment is one guard accepts, its secrets files from the existing Secret
    env = {e["name"]: e.get("value", "pod-name") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    secret_dir = mounts["keys"]
    keys = {"database-url": "postgresql://guard@db.example.co.jp/guard",
            "secret": "0123456789abcdef" * 4, "metrics-token": "t" * 32,
            "users.yaml": "users: {}\n"}
    files = {}
    for key, value in keys.items():
        (tmp_path / key).write_text(value + "\n")
        (tmp_path / key).chmod(0o600)
        files[f"{secret_dir}/{key}"] = tmp_path / key
    for key, value in env.items():
        if key.endswith("_FILE") and key != "GUARD_USERS_FILE":
            assert value.startswith(secret_dir + "/") and value in files, (key, value)
    env = {k: v for k, v in env.items() if not k.startswith("GUARD_TLS_")}
    env["GUARD_POLICY"] = str(tmp_path)
    settings = settings_from(env, files)
    assert settings.database.url == keys["database-url"]
    assert settings.web.base_url.startswith("https://")
    assert load_secret(settings) == bytes.fromhex(keys["secret"])
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "keys")["secret"]
    # the policy from the ConfigMap is one guard runs
    (tmp_path / "policy.yaml").write_text(
        rendered["ConfigMap/guard-policy"]["data"]["policy.yaml"])
    policy = load_policy(tmp_path)
    assert len(policy.rules) == 3 and not policy.warnings

    smtp = rendered["Service/guard-smtp"]["spec"]
    assert smtp["externalTrafficPolicy"] == "Local"
    assert smtp["selector"].items() <= labels.items()
    pdb = rendered["PodDisruptionBudget/guard"]["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"].items() <= labels.items()

    # the ServiceMonitor (a CRD, checked by shape): selects the web Service, scrapes a
    # port it has, with the token of the Secret the guards read theirs from
    sm = rendered["ServiceMonitor/guard"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    web = rendered["Service/guard-web"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= web["metadata"]["labels"].items()
    assert not sm["spec"]["selector"]["matchLabels"].items() <= \
        rendered["Service/guard-smtp"]["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in web["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"
    token = endpoint["bearerTokenSecret"]
    assert token["name"] == secret_volume["secretName"]
    assert f"{secret_dir}/{token['key']}" == env["GUARD_METRICS_TOKEN_FILE"]


# --- systemd ------------------------------------------------------------------------------


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "systemd")
    unit = (DEPLOY / "systemd" / "guard.service").read_text()
    assert "\nExecStart=/opt/guard/bin/guard serve\n" in unit
    # verify checks that ExecStart's program exists: point it at this checkout's guard
    guard_bin = Path(sys.executable).parent / "guard"
    assert guard_bin.exists()
    (tmp_path / "guard.service").write_text(
        unit.replace("ExecStart=/opt/guard/bin/guard", f"ExecStart={guard_bin}"))
    r = run(analyze, "verify", str(tmp_path / "guard.service"))
    assert r.stderr == "", r.stderr  # unknown keys and bad values are warnings there
    r = run(analyze, "security", "--offline=yes", str(tmp_path / "guard.service"))
    m = re.search(r"Overall exposure level for guard\.service: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout
    assert float(m.group(1)) <= 2.0, r.stdout  # "OK" is below 4.0; this unit gets 1.7
    # every secret comes in as a credential, read through a GUARD_*_FILE setting
    for line in re.findall(r"^#?LoadCredential=(\w[\w.]*):", unit, re.M):
        assert re.search(rf"^#?Environment=GUARD_\w+=%d/{re.escape(line)}$", unit, re.M), line
