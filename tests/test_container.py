"""The Dockerfile, built and run with podman: non-root, data on the volume, a required
base URL, the HEALTHCHECK, SMTP through the container, SIGTERM as PID 1, and the data
(queue and secret) surviving a restart.

No registry but Debian's and PyPI is reachable here, so the base image is made the way
the Dockerfile's BASE argument allows: `debootstrap --variant=minbase bookworm` with
python3 and python3-venv, imported with `podman import` (Debian's python3 is the 3.11 of
the official python:3.11-slim-bookworm default). It is kept between runs, as is podman's
layer cache (the dependencies' layer is rebuilt only when pyproject.toml changes).
Figures on the 2-core test machine: base image 80 s once; build 90 s cold, 30 s after a
code change; the run below 20 s.

This machine's podman needs two settings, given in a containers.conf of the test's own
(CONTAINERS_CONF): runc, since crun refuses the hybrid cgroup v1/v2 layout, and file and
process limits no higher than the machine's (podman's default of a million open files
needs CAP_SYS_RESOURCE, which the machine does not give). The container uses the host's
network with its listeners on 127.0.0.1 (ports of the test's own), so nothing is
reached but loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Sink, free_port, simple_message, wait_for, wait_port

BASE_IMAGE = "localhost/guard-base:bookworm"
IMAGE = "localhost/guard:test"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""

# one worker (pytest-xdist) runs this module: the image is built once, and two builds
# of one tag at once would race
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("podman")]


def podman_usable() -> bool:
    return shutil.which("podman") is not None and shutil.which("runc") is not None \
        and os.geteuid() == 0


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not podman_usable():
        if os.environ.get("CI"):
            pytest.fail("podman and runc (as root) are required in CI: .ci/run installs them")
        pytest.skip("podman/runc not installed or not root")
    d = tmp_path_factory.mktemp("podman")
    (d / "containers.conf").write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf")}


def podman(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {r.returncode}\n{r.stderr[-3000:]}")
    return r


def ensure_base_image(env: dict[str, str]) -> None:
    if podman(env, "image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    if shutil.which("debootstrap") is None:
        pytest.fail("debootstrap is needed to make the base image (.ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="guard-rootfs-") as root:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                        "bookworm", root, "http://deb.debian.org/debian"], check=True,
                       capture_output=True, timeout=600)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, env=env,
                       check=True, capture_output=True, timeout=300)
        assert tar.wait() == 0


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    ensure_base_image(podman_env)
    # pip inside the build trusts the same certificate authorities as this machine
    pip_conf = tmp_path_factory.mktemp("pip") / "pip.conf"
    pip_conf.write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    # --network host: the build's pip reaches PyPI without a container network (CNI)
    podman(podman_env, "build", "--network", "host", "--format", "docker",
           "--build-arg", f"BASE={BASE_IMAGE}",
           "-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
           "-v", f"{pip_conf}:/etc/pip.conf:ro", "-t", IMAGE, str(ROOT), timeout=900)
    return IMAGE


@pytest.fixture
def container(podman_env: dict[str, str], image: str) -> Iterator[dict[str, str]]:
    name = f"guard-test-{os.getpid()}-{time.monotonic_ns()}"
    yield {"name": name, "volume": f"{name}-data"}
    podman(podman_env, "rm", "-f", "-t", "0", name, check=False)
    podman(podman_env, "volume", "rm", "-f", f"{name}-data", check=False)


def healthy(env: dict[str, str], name: str) -> bool:
    return podman(env, "healthcheck", "run", name, check=False).returncode == 0


def test_the_image_runs_non_root_with_its_data_on_the_volume(
        podman_env: dict[str, str], image: str, container: dict[str, str]) -> None:
    env, name = podman_env, container["name"]
    inspect = json.loads(podman(env, "image", "inspect", image).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == "10025:10025"
    assert "/var/lib/guard" in config["Volumes"]
    assert inspect["Healthcheck"]["Test"] == ["CMD", "guard", "health"]  # docker format
    # no compiler or build tool came along from the build stage
    r = podman(env, "run", "--rm", "--entrypoint", "sh", image, "-c",
               "command -v gcc cc make pip pip3; ls /opt/guard/bin | grep -c '^pip'", check=False)
    assert r.stdout.strip() == "0", r.stdout

    # no base URL: one line, exit 2, nothing written
    r = podman(env, "run", "--rm", "--no-healthcheck", "-e",
               "GUARD_POLICY=/usr/share/guard/policies", image,
               check=False, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "guard: web.base_url (GUARD_BASE_URL) is not set: the address people open the "
        "review pages at, e.g. https://guard.example.co.jp"]

    sink = Sink().start()
    smtp, web = free_port(), free_port()
    try:
        podman(env, "run", "-d", "--name", name, "--network", "host", "--read-only",
               "-v", f"{container['volume']}:/var/lib/guard",
               "-e", "GUARD_BASE_URL=https://guard.example.co.jp",
               "-e", f"GUARD_SMTP_LISTEN=127.0.0.1:{smtp}", "-e", "GUARD_SMTP_MODE=trusted",
               "-e", f"GUARD_WEB_LISTEN=127.0.0.1:{web}", "-e", f"GUARD_UPSTREAM={sink.url}",
               "-e", "GUARD_POLICY=/usr/share/guard/policies", "-e", "GUARD_INSPECT__WORKERS=1",
               image)
        wait_port(smtp, 60)
        wait_for(lambda: healthy(env, name), timeout=60, interval=1,
                 what="podman healthcheck run: healthy")
        assert podman(env, "exec", name, "id", "-u").stdout.strip() == "10025"
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.sendmail("sato@example.co.jp", ["tanaka@example.co.jp"],
                       simple_message("through the container", sender="sato@example.co.jp",
                                      to="tanaka@example.co.jp"))
        sink.wait_count(1)
        listing = podman(env, "exec", name, "ls", "-ln", "/var/lib/guard").stdout
        for f in ("guard.db", "guard.secret"):
            assert " 10025 10025 " in next(ln for ln in listing.splitlines()
                                            if ln.endswith(f)), listing
        secret = podman(env, "exec", name, "cat", "/var/lib/guard/guard.secret").stdout

        # SIGTERM reaches guard as PID 1: it stops at once and cleanly
        started = time.monotonic()
        podman(env, "stop", "-t", "30", name)
        assert time.monotonic() - started < 15
        assert podman(env, "inspect", name, "--format", "{{.State.ExitCode}}"
                      ).stdout.strip() == "0"

        # a new start of the same volume: the queue and the secret are still there
        podman(env, "start", name)
        wait_for(lambda: healthy(env, name), timeout=60, interval=1, what="healthy again")
        rows = json.loads(podman(env, "exec", name, "guard", "queue", "list", "--json").stdout)
        assert [(r["state"], r["subject"]) for r in rows] == [
            ("delivered", "through the container")], rows
        assert podman(env, "exec", name, "cat", "/var/lib/guard/guard.secret").stdout == secret
    finally:
        sink.stop()


def test_the_image_runs_as_the_kubernetes_manifests_run_it(
        podman_env: dict[str, str], image: str, container: dict[str, str],
        tmp_path: Path) -> None:
    """The Deployment's own environment (kubectl kustomize), its Secret keys as read-only
    files, the ConfigMap's policy, a read-only root file system: a guard on PostgreSQL
    that keeps nothing on its volume and whose /readyz and /livez answer."""
    import yaml

    from tests.conftest import require_postgres, reset_postgres

    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is required (.ci/run installs kubernetes-client)")
    env, name = podman_env, container["name"]
    url = require_postgres()
    reset_postgres()
    rendered = {d["kind"]: d for d in yaml.safe_load_all(subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "kubernetes")], check=True,
        capture_output=True, text=True, timeout=60).stdout)}
    (c,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    keys, policy = tmp_path / "keys", tmp_path / "policy"
    keys.mkdir()
    policy.mkdir()
    for key, value in {"database-url": url, "secret": "5e" * 32,
                       "metrics-token": "m" * 32, "users.yaml": "users: {}"}.items():
        (keys / key).write_text(value + "\n")
        (keys / key).chmod(0o440)
        os.chown(keys / key, 0, 10025)  # as kubelet mounts a Secret: root, fsGroup
    for key, value in rendered["ConfigMap"]["data"].items():
        (policy / key).write_text(value)
    sink = Sink().start()
    smtp, web = free_port(), free_port()
    pod_env = {e["name"]: e.get("value", "guard-7d9f-abcde") for e in c["env"]
               if not e["name"].startswith("GUARD_TLS_")}  # trusted mode below: no TLS
    pod_env.update({"GUARD_UPSTREAM": sink.url, "GUARD_SMTP_MODE": "trusted",
                    "GUARD_SMTP_LISTEN": f"127.0.0.1:{smtp}",
                    "GUARD_WEB_LISTEN": f"127.0.0.1:{web}", "GUARD_INSPECT__WORKERS": "1"})
    try:
        podman(env, "run", "-d", "--name", name, "--network", "host", "--read-only",
               "--user", "10025:10025", "--group-add", "10025", "--no-healthcheck",
               "-v", f"{keys}:{mounts['keys']}:ro", "-v", f"{policy}:{mounts['policy']}:ro",
               "-v", f"{container['volume']}:{mounts['data']}",
               *[a for k, v in pod_env.items() for a in ("-e", f"{k}={v}")], image)
        try:
            wait_port(smtp, 60)
        except TimeoutError:
            logs = podman(env, "logs", name, check=False)
            raise AssertionError(logs.stdout[-3000:] + logs.stderr[-3000:]) from None
        wait_for(lambda: podman(env, "exec", name, "guard", "health", "--ready",
                                check=False).returncode == 0, timeout=60, interval=1,
                 what="/readyz")
        ready = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            path = ready[probe]["httpGet"]["path"]
            r = podman(env, "exec", name, "python3", "-c",
                       f"import urllib.request as u; print(u.urlopen("
                       f"'http://127.0.0.1:{web}{path}').status)")
            assert r.stdout.strip() == "200", (probe, r.stdout, r.stderr)
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.sendmail("sato@example.co.jp", ["tanaka@example.co.jp"],
                       simple_message("k8s shape", sender="sato@example.co.jp",
                                      to="tanaka@example.co.jp"))
        sink.wait_count(1)
        # stateless: the queue is in PostgreSQL, nothing was written on the volume
        assert podman(env, "exec", name, "ls", "-A", mounts["data"]).stdout == ""
    finally:
        sink.stop()
