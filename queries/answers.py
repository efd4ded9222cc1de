"""What the HTTP queries answer (CONTRACT.md, the HTTP query side): the read model builds
these, and FastAPI serializes them and documents them in the OpenAPI document."""

from typing import Any

from pydantic import BaseModel


class PointsAnswer(BaseModel):
    user_id: int
    balance: int


class ProductAnswer(BaseModel):
    product_id: int
    name: str
    price: int
    stock: int


class CartLineAnswer(BaseModel):
    product_id: int
    name: str
    unit_price: int
    quantity: int


class CartAnswer(BaseModel):
    user_id: int
    items: list[CartLineAnswer]
    total: int


class TopProductAnswer(BaseModel):
    product_id: int
    name: str
    units_sold: int


class TopProductsAnswer(BaseModel):
    window_hours: int
    products: list[TopProductAnswer]


class ErrorAnswer(BaseModel):
    error: str
    detail: Any = None
