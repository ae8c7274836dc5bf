"""NFKC normalisation of scanned text: guard.mail.nfkc, which the body parts read too
(the personal-data modules and keywords import it from here)."""

from __future__ import annotations

from guard.mail.nfkc import NFKC_SAFE_RANGES, normalize

__all__ = ["NFKC_SAFE_RANGES", "normalize"]
