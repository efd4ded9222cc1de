"""The Kafka principals of CONTRACT.md's Access table, by name. What each may do is
`contracts.access`; the command topics name their writers in their routes."""

from typing import Final

SERVICE: Final = "shopflow"  # the consumers: reads commands, writes results
ACCOUNTS: Final = "shop-accounts"
CATALOG: Final = "shop-catalog"
PAYMENTS: Final = "shop-payments"
STOREFRONT: Final = "shop-storefront"
FULFILMENT: Final = "shop-fulfilment"  # the warehouse: ships orders
READER: Final = "shop-reader"  # downstream services reading results
GATEWAY: Final = "shopflow-gateway"  # the HTTP entry of `shopflow serve`
OPS: Final = "shopflow-ops"  # operators and the CLI
# The local servers' super user (provisioning, topic creation and deletion); a
# deployment's is its own, and the contract's table gives it nothing, since it needs no ACL.
ADMIN: Final = "admin"
