"""Accounting: one payment per order and a ledger per customer. Decisions in `domain`, I/O in `app`."""
