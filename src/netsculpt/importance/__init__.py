"""Scores: which channels, heads and blocks matter (weights only, or measured on data)."""

from netsculpt.importance.channels import ESTIMATORS, score_groups

__all__ = ["ESTIMATORS", "score_groups"]
