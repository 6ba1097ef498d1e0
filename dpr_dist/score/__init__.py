"""Batch scoring of patient backlogs on Ray Data (``dpr score``): :func:`score_backlog`."""

from dpr_dist.score.batch import RESULT_SCHEMA, BacklogScorer, Shard, plan_shards, score_backlog

__all__ = ["RESULT_SCHEMA", "BacklogScorer", "Shard", "plan_shards", "score_backlog"]
