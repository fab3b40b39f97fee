"""Retraining: the training worker, the evaluation gate and the scheduler.

Owns consuming retrain jobs and answering them (:mod:`~workers.training.trainer`,
:mod:`~workers.training.answers`), what a job may ask for
(:mod:`~workers.training.allowed`), the steps run in a thread
(:mod:`~workers.training.steps`), the evaluation gate and its evidence
(:mod:`~workers.training.gate`, :mod:`~workers.training.evidence`) and the scheduler that
turns due schedules and bad metrics into retrain jobs
(:mod:`~workers.training.scheduler`). Recipes (:mod:`workers.recipes`) and optimisation
(:mod:`workers.optimize`) are rooms of their own beside it. It imports nothing of serving.
"""
