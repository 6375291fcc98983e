"""Inventory: stock per SKU and one reservation per order. Decisions in `domain`, I/O in `app`."""
