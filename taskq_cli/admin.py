"""Moved to taskq_cli/services/admin.py; this name stays importable."""

from taskq_cli.services.admin import Admin

__all__ = ["Admin"]
