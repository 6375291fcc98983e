"""Shipping: one shipment per order. Decisions in `domain`, Kafka and SQLite in `app`."""
