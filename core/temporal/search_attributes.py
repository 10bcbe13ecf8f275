"""Custom search attributes, registered at start-up so admins can filter in the Web UI.

Values are identifiers and states only: never a secret or personal data.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
TENANT_PLAN = SearchAttributeKey.for_keyword("TenantPlan")
DEPLOYMENT_STATE = SearchAttributeKey.for_keyword("DeploymentState")
BUNDLE_ID = SearchAttributeKey.for_keyword("BundleId")
BILLING_STATUS = SearchAttributeKey.for_keyword("BillingStatus")
# The Swarm node (hostname) the tenant's runtime was placed on after its last action.
TENANT_NODE = SearchAttributeKey.for_keyword("TenantNode")

ALL = (TENANT_ID, TENANT_PLAN, DEPLOYMENT_STATE, BUNDLE_ID, BILLING_STATUS, TENANT_NODE)


def dev_server_flags() -> list[str]:
    """``--search-attribute`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


async def register(client: Client) -> list[str]:
    """Register every missing search attribute on the client's namespace; return the added names."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)
