"""Prometheus and Alertmanager on this machine (``up`` with ``TCC_LOCAL_ALERTING=1``).

The configurations are the production ones in ``deploy/prometheus/`` with local targets
and token files written here (mode 0600), so what runs locally is what compose runs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
JOBS = ("tinyclaw-api", "tinyclaw-worker", "tinyclaw-gateway")


@dataclass(frozen=True)
class LocalAlerting:
    """Where the rendered configuration lives, and the commands that run both engines."""

    directory: Path
    prometheus: list[str]
    alertmanager: list[str]
    prometheus_url: str
    alertmanager_url: str


def _write_secret(path: Path, value: str) -> Path:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(value)
    return path


def missing_binaries() -> list[str]:
    """The Debian packages' binaries that are not installed."""
    return [b for b in ("prometheus", "prometheus-alertmanager") if shutil.which(b) is None]


def render(
    settings: Settings,
    directory: Path,
    *,
    metrics_token: str,
    webhook_token: str,
    api_url: str,
    group_wait: str = "30s",
) -> LocalAlerting:
    """Write prometheus.yml, alertmanager.yml, the rules and the token files to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    metrics_file = _write_secret(directory / "metrics_token", metrics_token)
    hook_file = _write_secret(directory / "alert_webhook_token", webhook_token)
    shutil.copyfile(DEPLOY / "rules.yml", directory / "rules.yml")
    api = api_url.removeprefix("http://").rstrip("/")
    targets = {
        "tinyclaw-api": api,
        "tinyclaw-worker": f"127.0.0.1:{settings.worker_metrics_port}",
        "tinyclaw-gateway": f"127.0.0.1:{settings.gateway_port}",
    }
    prom: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    prom["rule_files"] = [str(directory / "rules.yml")]
    prom["global"].update(scrape_interval="10s", evaluation_interval="10s")  # quick locally
    am_address = f"127.0.0.1:{settings.alertmanager_port}"
    prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [am_address]
    for job in prom["scrape_configs"]:
        # The compose stack finds its replicas by DNS; here each part is one process.
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        job["authorization"]["credentials_file"] = str(metrics_file)
    (directory / "prometheus.yml").write_text(yaml.safe_dump(prom, sort_keys=False))
    am: dict[str, Any] = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    am["route"]["group_wait"] = group_wait
    hook = am["receivers"][0]["webhook_configs"][0]
    hook["url"] = f"{api_url.rstrip('/')}/alerts/alertmanager"
    hook["http_config"]["authorization"]["credentials_file"] = str(hook_file)
    (directory / "alertmanager.yml").write_text(yaml.safe_dump(am, sort_keys=False))
    prom_url = f"http://127.0.0.1:{settings.prometheus_port}"
    return LocalAlerting(
        directory=directory,
        prometheus=[
            "prometheus", f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{settings.prometheus_port}",
        ],
        alertmanager=[
            "prometheus-alertmanager", f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'alertmanager-data'}",
            f"--web.listen-address={am_address}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
        prometheus_url=prom_url,
        alertmanager_url=f"http://{am_address}",
    )  # fmt: skip
