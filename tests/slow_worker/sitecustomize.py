"""Put on PYTHONPATH by tests/conftest.py guard_factory(..., slow_readers=True): every
Python process of that `guard serve` (and so its extraction workers) reads attachments
with the misbehaving readers of tests/inspect/slow_readers.py. Tests only."""

from guard.inspect import extract
from tests.inspect import slow_readers

extract.READERS = slow_readers.READERS
