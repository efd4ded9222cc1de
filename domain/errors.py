"""One exception hierarchy for every business "no".

A `Rejected` is not a failure of the service: the command is answered with a
`...Rejected` event carrying `reason`, its effects are rolled back, and its
`command_id` is spent.
"""

from shopflow.contracts.events import RejectionReason


class Rejected(Exception):
    reason: RejectionReason

    def __init__(self, detail: str = "", *, product_id: int | None = None) -> None:
        super().__init__(detail or self.reason.value)
        self.product_id = product_id


class UnknownUser(Rejected):
    reason = RejectionReason.UNKNOWN_USER


class UserExists(Rejected):
    reason = RejectionReason.USER_EXISTS


class UnknownProduct(Rejected):
    reason = RejectionReason.UNKNOWN_PRODUCT


class InsufficientPoints(Rejected):
    reason = RejectionReason.INSUFFICIENT_POINTS


class OutOfStock(Rejected):
    reason = RejectionReason.OUT_OF_STOCK


class InsufficientCartQuantity(Rejected):
    reason = RejectionReason.INSUFFICIENT_CART_QUANTITY


class EmptyCart(Rejected):
    reason = RejectionReason.EMPTY_CART


class BalanceLimitExceeded(Rejected):
    reason = RejectionReason.BALANCE_LIMIT_EXCEEDED


class PaymentFailed(Rejected):
    reason = RejectionReason.PAYMENT_FAILED


class UnknownOrder(Rejected):
    reason = RejectionReason.UNKNOWN_ORDER


class OrderAlreadyCancelled(Rejected):
    reason = RejectionReason.ORDER_CANCELLED


class OrderAlreadyShipped(Rejected):
    reason = RejectionReason.ORDER_SHIPPED
