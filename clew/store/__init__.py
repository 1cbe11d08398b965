"""Persistence: metadata (SQLAlchemy Core), content-addressed blobs, captured predictions."""
