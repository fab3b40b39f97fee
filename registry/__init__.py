"""The model registry: versions, aliases, metrics, retraining runs, schedules, audit."""
