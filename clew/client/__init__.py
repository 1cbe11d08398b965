"""The SDK users import: ``Client`` and the MLflow-shaped module functions in ``clew``."""
