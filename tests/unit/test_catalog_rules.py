import pytest

from shopflow.domain.catalog import Product
from shopflow.domain.errors import OutOfStock


def test_restock_renames_reprices_and_adds_units() -> None:
    product = Product(1, "Mug", 900, 5)

    assert product.restocked("Big mug", 1200, 3) == Product(1, "Big mug", 1200, 8)


def test_taking_the_whole_stock_leaves_zero() -> None:
    assert Product(1, "Mug", 900, 5).take(5).stock == 0


def test_taking_more_than_the_stock_is_out_of_stock_and_names_the_product() -> None:
    with pytest.raises(OutOfStock) as refused:
        Product(7, "Mug", 900, 2).take(3)
    assert refused.value.product_id == 7
