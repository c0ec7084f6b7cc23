"""Data movement between locations that share no filesystem."""

from __future__ import annotations

from streamflow.data.objectstore import FILES_BUCKET, fetch_missing, is_published, object_name, publish_paths

__all__ = ["FILES_BUCKET", "fetch_missing", "is_published", "object_name", "publish_paths"]
