"""The alert rules, unit-tested with Prometheus's own ``promtool test rules``, and the
Prometheus and Alertmanager configurations checked by their own tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
PROM = ROOT / "deploy" / "prometheus"
HERE = Path(__file__).resolve().parent


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make system` installs Debian's prometheus packages")
    return found


def _run(*args: str, cwd: Path = HERE) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_rules_are_valid_and_pass_their_unit_tests() -> None:
    _run(_tool("promtool"), "check", "rules", str(PROM / "rules.yml"))
    out = _run(_tool("promtool"), "test", "rules", "rules_test.yml")
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_case_in_the_unit_tests() -> None:
    rules = yaml.safe_load((PROM / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
    fired = {
        t["alertname"]
        for case in cases
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert alerts - fired == set(), "alerts without a test that makes them fire"
    for group in rules["groups"]:
        for rule in group["rules"]:
            labels = rule["labels"]
            assert labels["audience"] in ("customer", "operator"), rule["alert"]
            if labels["audience"] == "customer":
                assert labels["notice"] in ("bot_down", "token_revoked", "budget_80", "budget_100")


def test_prometheus_and_alertmanager_configs_are_valid(tmp_path: Path) -> None:
    # The configs point at token files the containers write at start; give them some here.
    token = tmp_path / "token"
    token.write_text("t")
    for name in ("prometheus.yml", "alertmanager.yml", "rules.yml"):
        text = (PROM / name).read_text()
        text = text.replace("/tmp/tcc/metrics_token", str(token))
        text = text.replace("/tmp/tcc/alert_webhook_token", str(token))
        (tmp_path / name).write_text(text)
    _run(_tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    _run(_tool("amtool"), "check-config", str(tmp_path / "alertmanager.yml"))
