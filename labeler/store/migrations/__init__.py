"""The store's schema migrations (Alembic). `labeler.store.db.make_engine` runs them to the newest on start; a new
revision: `.venv/bin/alembic -c labeler/store/migrations/alembic.ini revision -m "what changes"`, then write its
`upgrade()` (SQLite and PostgreSQL alike: `op.batch_alter_table` where SQLite needs it)."""
