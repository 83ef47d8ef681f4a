"""/v1/service-offers and /v1/service-orders — the 五单 volunteer-service loop
(亮单 → 点单 → 派单 → 接单 → 评单): the routes (``controller``), what reads answer
(``schemas``) and their SQL (``queries``). Roles and placement:
``services.commands.service_orders``.
"""

from services.api.service_orders.controller import (
    ServiceOfferController,
    ServiceOrderController,
)

__all__ = ["ServiceOfferController", "ServiceOrderController"]
