"""Custom bundles (issue 17): an organization on Business authors a bundle, sees a clear
422 for a broken template, fixes it, publishes immutable versions, deploys it to its bot
(process driver, real Temporal), and another organization can neither see nor deploy it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.api.conftest import Client, signup
from tests.api.test_tenants_flow import wait_state
from tests.lifecycle_stack import Stack
from worker import lifecycle_activities

MANIFEST = """
id = "support-desk"
version = "{version}"
name = "Support desk"
description = "Answers customers of Acme and hands billing questions to a specialist."
changelog = "{changelog}"
plans = ["business"]
schema_version = 1
default_agent = "frontline"

[agents.frontline]
name = "Frontline"
role = "Greets customers and answers common questions."
prompt_template = "agents/frontline.md"

[agents.billing]
name = "Billing"
role = "Answers invoice and payment questions."
prompt_template = "agents/billing.md"

[teams.desk]
name = "Desk"
leader = "frontline"
agents = ["frontline", "billing"]

[prompts]
heartbeat = "heartbeat.md"
"""
FRONTLINE = """# {{ agent.name }} of {{ tenant_name }}

You work the Acme support desk. {{ agent.role }}
Hand invoice questions to `[@{{ teammates[0].id }}: ...]`.
"""
BROKEN = FRONTLINE.replace("{{ teammates[0].id }}", "{{ teammates[0].id }")


def files(version: str = "1.0.0", frontline: str = FRONTLINE, changelog: str = "First.") -> dict:
    return {
        "bundle.toml": MANIFEST.format(version=version, changelog=changelog),
        "agents/frontline.md": frontline,
        "agents/billing.md": "# {{ agent.name }}\n\n{{ agent.role }}\n",
        "heartbeat.md": "Reply OK.\n",
    }


async def org_with_bot(
    api: Client, stack: Stack, tokens: Callable[[], str], email: str, plan: str
) -> tuple[dict[str, str], str, str]:
    """An account, its team organization and one bot on ``plan`` with a Telegram token."""
    who = await signup(api, email)
    org = (await api.post("/orgs", json={"name": email.split("@")[0]}, headers=who)).json()["id"]
    r = await api.post(
        "/tenants", json={"name": "Desk bot", "plan": plan, "organization_id": org}, headers=who
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    token = tokens()
    stack.telegram.add_bot(token, username=f"desk_{tid[:6]}")
    ok = await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=who)
    assert ok.status_code == 200, ok.text
    return who, org, tid


async def test_custom_bundle_authored_fixed_versioned_deployed_and_private(
    api: Client, process_stack: Stack, tokens: Callable[[], str]
) -> None:
    alice, acme, _starter_bot = await org_with_bot(
        api, process_stack, tokens, "alice@acme.example", "starter"
    )
    # No Business bot in the organization yet: 403 naming the plan that allows it.
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": files()}, headers=alice)
    assert (r.status_code, r.json()["code"]) == (403, "feature_not_in_plan"), r.text
    assert "Business" in r.json()["message"]

    r = await api.post(
        "/tenants", json={"name": "Desk", "plan": "business", "organization_id": acme},
        headers=alice,
    )  # fmt: skip
    tid = r.json()["id"]
    token = tokens()
    process_stack.telegram.add_bot(token, username="acme_desk")
    assert (
        await api.put(f"/tenants/{tid}/telegram", json={"token": token}, headers=alice)
    ).is_success

    # A broken template: 422 naming the manifest field, the template and its line.
    r = await api.post(
        f"/orgs/{acme}/bundles", json={"files": files(frontline=BROKEN)}, headers=alice
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_bundle"), r.text
    message = r.json()["message"]
    assert message.startswith(
        "bundle.toml: agents.frontline.prompt_template: template 'agents/frontline.md': line 4:"
    ), message
    # A typo in the manifest names the field; a plan that cannot run custom bundles too.
    typo = files()
    typo["bundle.toml"] = typo["bundle.toml"].replace("default_agent", "default_agnet")
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": typo}, headers=alice)
    assert r.json()["message"] == "bundle.toml: default_agnet: unknown field"
    starter = files()
    starter["bundle.toml"] = starter["bundle.toml"].replace('["business"]', '["starter"]')
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": starter}, headers=alice)
    assert (
        r.status_code == 422
        and "plans[0]: the starter plan cannot run custom bundles" in (r.json()["message"])
    )
    image = files()
    image["bundle.toml"] = image["bundle.toml"].replace(
        "schema_version = 1", 'schema_version = 1\nruntime_image = "evil/miner:latest"'
    )
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": image}, headers=alice)
    assert r.status_code == 422 and r.json()["message"].startswith(
        "bundle.toml: runtime_image: custom bundles run the platform's runtime"
    ), r.text
    shipped = files()
    shipped["bundle.toml"] = shipped["bundle.toml"].replace('"support-desk"', '"starter"')
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": shipped}, headers=alice)
    assert "id: 'starter' is a shipped bundle's id" in r.json()["message"]

    # Fixed, published, immutable; the edit is a new version, and the diff shows it.
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": files()}, headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == "1.0.0"
    assert r.json()["teams"][0] == {"id": "desk", "name": "Desk", "leader": "frontline",
                                    "agents": ["frontline", "billing"]}  # fmt: skip
    again = await api.post(f"/orgs/{acme}/bundles", json={"files": files()}, headers=alice)
    assert (again.status_code, again.json()["code"]) == (409, "version_exists")
    assert "for example 1.0.1" in again.json()["message"]
    edited = files("1.1.0", FRONTLINE + "Always sign as the Acme desk.\n", "Signs replies.")
    r = await api.post(f"/orgs/{acme}/bundles", json={"files": edited}, headers=alice)
    assert r.status_code == 201, r.text
    listed = (await api.get(f"/orgs/{acme}/bundles", headers=alice)).json()
    assert [(b["id"], b["versions"]) for b in listed] == [("support-desk", ["1.1.0", "1.0.0"])]
    diff = (
        await api.get(
            f"/orgs/{acme}/bundles/support-desk/diff",
            params={"from": "1.0.0", "to": "1.1.0"}, headers=alice,
        )
    ).json()  # fmt: skip
    prompt = next(f for f in diff["files"] if f["file"] == "agents/frontline.md")
    assert "+Always sign as the Acme desk." in prompt["diff"]
    got = await api.get(
        f"/orgs/{acme}/bundles/support-desk/files", params={"version": "1.0.0"}, headers=alice
    )
    assert got.json()["files"]["agents/frontline.md"] == FRONTLINE

    # Deployed like any other bundle (pinned to 1.0.0 first, then the latest).
    r = await api.post(
        f"/tenants/{tid}/deploy", json={"bundle_id": "support-desk", "bundle_version": "1.0.0"},
        headers=alice,
    )  # fmt: skip
    assert r.status_code == 202, r.text
    body = await wait_state(api, tid, alice, "healthy")
    assert body["deployment"]["bundle_id"] == "support-desk"
    home = Path(lifecycle_activities(process_stack.ctx).provisioner.home_for(tid))
    agents = (home / "workspace" / "frontline" / "AGENTS.md").read_text()
    assert agents.startswith("# Frontline of Desk") and "[@billing: ...]" in agents
    offer = (await api.get(f"/tenants/{tid}/bundle-versions", headers=alice)).json()
    assert [v["version"] for v in offer["newer"]] == ["1.1.0"]

    # Another organization: its members get 404, and its bot cannot deploy the bundle.
    bob, other, bob_bot = await org_with_bot(
        api, process_stack, tokens, "bob@other.example", "business"
    )
    for path in (f"/orgs/{acme}/bundles", f"/orgs/{acme}/bundles/support-desk"):
        r = await api.get(path, headers=bob)
        assert r.status_code == 404, (path, r.text)
    r = await api.get(f"/orgs/{other}/bundles/support-desk", headers=bob)
    assert (r.status_code, r.json()["code"]) == (404, "unknown_bundle")
    assert (await api.get(f"/orgs/{other}/bundles", headers=bob)).json() == []
    public = (await api.get("/bundles")).json()
    assert "support-desk" not in [b["id"] for b in public]
    r = await api.post(
        f"/tenants/{bob_bot}/deploy", json={"bundle_id": "support-desk"}, headers=bob
    )
    assert r.status_code == 202
    failed = await wait_state(api, bob_bot, bob, "failed")
    assert "Unknown bundle 'support-desk'" in (failed["deployment"]["reason"] or ""), failed
