"""The totesys star schema as the end-to-end tests check it: its facts (each with its source
table), its dimensions, and every foreign key of a fact row."""

FACTS = {"fact_sales_order": "sales_order", "fact_purchase_orders": "purchase_order", "fact_payment": "payment"}
DIMENSIONS = ("dim_date", "dim_staff", "dim_location", "dim_currency", "dim_design", "dim_counterparty",
              "dim_payment_type", "dim_transaction")  # fmt: skip
FACT_DATES = {
    "fact_sales_order": ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date"),
    "fact_purchase_orders": ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date"),
    "fact_payment": ("created_date", "last_updated_date", "payment_date"),
}
FOREIGN_KEYS = [
    *[(fact, column, "dim_date", "date_id") for fact, columns in FACT_DATES.items() for column in columns],
    ("fact_sales_order", "sales_staff_id", "dim_staff", "staff_id"),
    ("fact_sales_order", "counterparty_id", "dim_counterparty", "counterparty_id"),
    ("fact_sales_order", "currency_id", "dim_currency", "currency_id"),
    ("fact_sales_order", "design_id", "dim_design", "design_id"),
    ("fact_sales_order", "agreed_delivery_location_id", "dim_location", "location_id"),
    ("fact_purchase_orders", "staff_id", "dim_staff", "staff_id"),
    ("fact_purchase_orders", "counterparty_id", "dim_counterparty", "counterparty_id"),
    ("fact_purchase_orders", "currency_id", "dim_currency", "currency_id"),
    ("fact_purchase_orders", "agreed_delivery_location_id", "dim_location", "location_id"),
    ("fact_payment", "transaction_id", "dim_transaction", "transaction_id"),
    ("fact_payment", "counterparty_id", "dim_counterparty", "counterparty_id"),
    ("fact_payment", "currency_id", "dim_currency", "currency_id"),
    ("fact_payment", "payment_type_id", "dim_payment_type", "payment_type_id"),
]
