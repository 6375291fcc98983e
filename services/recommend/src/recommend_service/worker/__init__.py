"""The recommend stream app's process: `python -m recommend_service.worker` (see __main__.py)."""
