"""The users service: ``GET /users/{user_id}`` from its own SQLite file.

Its request metrics (``http_requests_total``, ``http_request_duration_seconds``,
``active_connections``) come from cairn's middleware; every query is a
``db.query`` span.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from _db import Database, db_path
from fastapi import FastAPI, HTTPException

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    country TEXT NOT NULL
);
"""
USERS = 200
_NAMES = ("Ana", "Bruno", "Carla", "Diego", "Elisa", "Felipe", "Gabi", "Hugo", "Iris", "João")
_COUNTRIES = ("BR", "PT", "US", "DE", "JP")


def seed(connection: sqlite3.Connection) -> None:
    """Users 1..200 (kept if already there)."""
    connection.executemany(
        "INSERT OR IGNORE INTO users (user_id, name, email, country) VALUES (?, ?, ?, ?)",
        [
            (
                n,
                f"{_NAMES[n % len(_NAMES)]} {n}",
                f"user{n}@shop.example",
                _COUNTRIES[n % len(_COUNTRIES)],
            )
            for n in range(1, USERS + 1)
        ],
    )


def create_app(*, database: Path | None = None) -> FastAPI:
    """The users app; its database is ``database``, else ``$USERS_DB``, else ``.cairn/users.db``."""
    db = Database(database or db_path("USERS_DB", "users.db"), schema=SCHEMA, seed=seed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        try:
            yield
        finally:
            db.close()

    app = FastAPI(title="users", version="1.0.0", lifespan=lifespan)

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        user = await db.fetchone(
            "SELECT user_id, name, email, country FROM users WHERE user_id = ?", (user_id,)
        )
        if user is None:
            raise HTTPException(404, f"no user {user_id}")
        return user

    return app


app = create_app()
