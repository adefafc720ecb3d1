"""Evaluation services: protocols (:mod:`~recsys.evaluate.protocol`), the champion/challenger gate
(:mod:`~recsys.evaluate.gate`) and the Spark ranking metrics (:mod:`~recsys.evaluate.spark_metrics`).

The ranking metrics themselves (numpy) are on the ground floor, :mod:`recsys.metrics`, because
early stopping in the models uses them too.
"""
