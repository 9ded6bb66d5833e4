"""The store: tables, typed writes (prompts, sets, rankings), leasing, undo, users, log-in throttle, settings and
guidelines, and the Alembic migrations run on start. Torch-free; everything above reads and writes through it."""
