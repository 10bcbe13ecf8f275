"""compose.yaml is a valid Compose file (it cannot be run here: no registry is reachable)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_compose_config_is_valid() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: `make system` installs Debian's docker-compose")
    env = dict(
        os.environ,
        POSTGRES_PASSWORD="p",
        TCC_SESSION_SECRET="s",
        TCC_CODEC_KEY="k",
        TCC_VAULT_TOKEN="t",
        TCC_METRICS_TOKEN="m",
        TCC_ALERT_WEBHOOK_TOKEN="w",
    )
    result = subprocess.run([binary, "config"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for service in (
        "postgres:",
        "temporal:",
        "temporal-ui:",
        "openbao:",
        "api:",
        "worker:",
        "gateway:",
        "redis:",
        "prometheus:",
        "alertmanager:",
    ):
        assert service in result.stdout


def test_compose_refuses_missing_secrets() -> None:
    binary = shutil.which("docker-compose") or "docker-compose"
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "TCC_CODEC_KEY")}
    result = subprocess.run([binary, "config"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "TCC_" in result.stderr


def test_the_web_ui_is_published_only_behind_the_admin_auth_proxy() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert "ports" not in services["temporal-ui"]
    proxy = services["temporal-ui-proxy"]
    assert proxy["ports"] and proxy["depends_on"] == ["temporal-ui", "api"]
    conf = (ROOT / "deploy" / "temporal-ui-proxy.conf").read_text()
    assert "auth_request /_tcc_admin_check;" in conf
    assert "proxy_pass http://api:8000/admin/web-ui/auth;" in conf
    assert "proxy_pass http://temporal-ui:8080;" in conf


def test_prometheus_and_alertmanager_run_our_rules_and_reach_the_api() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "deploy/prometheus/rules.yml:/etc/prometheus/rules.yml" in mounts
    assert "deploy/prometheus/alertmanager.yml" in " ".join(services["alertmanager"]["volumes"])
    am = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alertmanager.yml").read_text())
    hook = am["receivers"][0]["webhook_configs"][0]
    assert hook["url"] == "http://api:8000/alerts/alertmanager"
    assert hook["http_config"]["authorization"]["credentials_file"]
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert set(jobs) == {"tinyclaw-api", "tinyclaw-worker", "tinyclaw-gateway"}
    assert all(job["authorization"]["credentials_file"] for job in jobs.values())


def test_api_gateway_and_workers_run_as_replicas_sharing_redis() -> None:
    """Issue 15: API and gateway replicas behind one edge, their limits shared in Redis;
    workers split by task queue, every queue served."""
    import yaml

    from core.temporal import ROLES

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("api", "gateway"):
        assert services[name]["deploy"]["replicas"] >= 2
        assert "ports" not in services[name]  # one address: the edge
        assert services[name]["environment"]["TCC_REDIS_URL"].startswith("redis://redis:")
    assert services["edge"]["ports"] == ["8000:8000", "8100:8100"]
    edge = (ROOT / "deploy" / "edge.conf").read_text()
    assert "server api:8000 resolve;" in edge and "server gateway:8100 resolve;" in edge
    workers = {
        name: svc["environment"]["TCC_WORKER_QUEUES"]
        for name, svc in services.items()
        if svc.get("command") == ["python", "-m", "worker"]
    }
    served = {role for queues in workers.values() for role in queues.split(",")}
    assert served == set(ROLES), workers
    assert services["worker-runtime"]["deploy"]["replicas"] >= 2
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    scraped = {
        name
        for job in prom["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    assert set(workers) | {"api", "gateway"} <= scraped


def test_the_keda_example_scales_each_worker_queue_on_its_backlog() -> None:
    """deploy/k8s/keda-worker.yaml names our queues and the metric the worker exports."""
    import yaml

    from core.temporal import ROLES, TaskQueues
    from core.worker_metrics import WorkerMetrics

    objects = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "keda-worker.yaml").read_text()))
    queues, metric = TaskQueues(), WorkerMetrics().backlog.count._name
    scaled = {}
    for obj in objects:
        assert obj["kind"] == "ScaledObject"
        (trigger,) = obj["spec"]["triggers"]
        meta = trigger["metadata"]
        if trigger["type"] == "temporal":
            scaled[meta["taskQueue"]] = obj["spec"]["scaleTargetRef"]["name"]
        else:
            assert trigger["type"] == "prometheus" and metric in meta["query"]
            queue = meta["query"].split('task_queue="')[1].split('"')[0]
            scaled[queue] = obj["spec"]["scaleTargetRef"]["name"]
    assert set(scaled) == {queues.of(role) for role in ROLES}
