"""The only place that speaks SQL: tables, the writer, queue operations, migrations.

Other rooms hold a connection or an engine only to hand it to store functions (a
BatchWriter operation receives a connection); they name those types, and the error a
failed database call raises, from here and never from the SQL library.
"""

from sqlalchemy.exc import SQLAlchemyError as StoreError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncConnection", "AsyncEngine", "StoreError"]
