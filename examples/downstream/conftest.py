"""The neighbouring team's fixtures, built on shopflow's (the pytest plugin that comes
with `pip install 'shopflow[testing]'`: no import, no setup here)."""

import httpx
import pytest

from examples.downstream.loyalty import LoyaltyProgram
from shopflow.producers.client import ShopflowClient


@pytest.fixture
def loyalty(shopflow_client: ShopflowClient, shopflow_http: httpx.AsyncClient) -> LoyaltyProgram:
    return LoyaltyProgram(shopflow_client, shopflow_http)
