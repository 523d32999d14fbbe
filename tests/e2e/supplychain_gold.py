"""The supply chain's three gold tables computed independently of the pipeline: plain Python and
Decimal over silver rows (dicts as pyarrow reads them back), straight from the contract's words.

The tests hold what the pipeline wrote (in S3 and in the warehouse) to this, row by row.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal


def _round(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def utc_date(moment: datetime):
    """A timestamp's UTC date (pyarrow gives tz-aware UTC datetimes for timestamp[us, tz=UTC])."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def supplier_performance(suppliers: list[dict], purchase_orders: list[dict]) -> list[dict]:
    by_supplier: dict[int, list[dict]] = defaultdict(list)
    for po in purchase_orders:
        by_supplier[po["supplier_id"]].append(po)
    rows = []
    for supplier in suppliers:
        orders = by_supplier.get(supplier["supplier_id"], [])
        live = [po for po in orders if po["status"] != "cancelled"]
        received = [po for po in orders if po["status"] == "received"]
        on_time = [
            po for po in received
            if (utc_date(po["received_at"]) - utc_date(po["ordered_at"])).days <= supplier["lead_time_days"]
        ]  # fmt: skip
        lead_days = [Decimal((po["received_at"] - po["ordered_at"]).total_seconds()) / 86400 for po in received]
        rows.append(
            {
                "supplier_id": supplier["supplier_id"],
                "supplier_name": supplier["supplier_name"],
                "purchase_orders": len(live),
                "units_received": sum(po["quantity"] for po in received),
                "on_time_rate": _round(Decimal(len(on_time)) / len(received), "0.0001") if received else None,
                "avg_lead_time_days": _round(sum(lead_days) / len(lead_days), "0.01") if received else None,
                "total_cost": _round(sum((po["quantity"] * po["unit_cost"] for po in live), Decimal(0)), "0.01"),
            }
        )
    return sorted(rows, key=lambda r: r["supplier_id"])


def inventory_position(shipments: list[dict], purchase_orders: list[dict]) -> list[dict]:
    received: dict[tuple, int] = defaultdict(int)
    shipped: dict[tuple, int] = defaultdict(int)
    for po in purchase_orders:
        if po["status"] == "received":
            received[(po["warehouse_id"], po["product_id"])] += po["quantity"]
    for shipment in shipments:
        if shipment["status"] != "cancelled":
            shipped[(shipment["warehouse_id"], shipment["product_id"])] += shipment["quantity"]
    return [
        {"warehouse_id": w, "product_id": p, "units_received": received[(w, p)], "units_shipped": shipped[(w, p)],
         "on_hand": received[(w, p)] - shipped[(w, p)]}
        for w, p in sorted(set(received) | set(shipped))
    ]  # fmt: skip


def daily_shipments(shipments: list[dict]) -> list[dict]:
    days: dict[tuple, dict] = {}
    for shipment in shipments:
        key = (utc_date(shipment["shipped_at"]), shipment["warehouse_id"])
        day = days.setdefault(key, {"shipments": 0, "units": 0, "delivered": 0, "late": 0})
        if shipment["status"] != "cancelled":
            day["shipments"] += 1
            day["units"] += shipment["quantity"]
        if shipment["status"] == "delivered":
            day["delivered"] += 1
            if utc_date(shipment["delivered_at"]) > shipment["promised_date"]:
                day["late"] += 1
    return [{"ship_date": d, "warehouse_id": w, **days[(d, w)]} for d, w in sorted(days)]
