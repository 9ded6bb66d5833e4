"""Base models for rankloop: resolution (embedded default, Hub id, local path), loading, tiny test models."""
