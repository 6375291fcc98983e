"""What counts as a product: the one definition shared by the real-data replay and the recommend service.

The UCI Online Retail data mixes product StockCodes (5 digits, optionally followed by letters: 85123A,
22423) with non-product lines: postage, fees, manual adjustments, samples, gift vouchers (POST, DOT, M,
D, C2, BANK CHARGES, AMAZONFEE, CRUK, PADS, S, B, DCGS..., gift_0001_...). Those are not stock and are
never "bought together" with anything.
"""

from __future__ import annotations

import re

# Non-product StockCodes seen in the data (for reference and tests). `is_product_code` rejects these
# and anything else that is not 5 digits plus optional letters, e.g. DCGS0003 or gift_0001_20.
NON_PRODUCT_CODES = frozenset(
    {"POST", "D", "M", "m", "DOT", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "S", "B", "C2"}
)
NON_PRODUCT_PREFIXES = ("DCGS", "gift_0001_")
_PRODUCT_CODE = re.compile(r"[0-9]{5}[A-Za-z]*")


def is_product_code(code: str) -> bool:
    """True for a product StockCode: 5 digits, optionally followed by letters (85123A, 22423)."""
    return code not in NON_PRODUCT_CODES and _PRODUCT_CODE.fullmatch(code) is not None
