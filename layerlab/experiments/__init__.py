"""Experiments: ``run_compare``, "which layer type for my data?" (see docs/compare.md)."""

from layerlab.experiments.compare import DEFAULT_MODELS, DEFAULT_RECIPE, CompareResult, RunRecord, run_compare
from layerlab.experiments.permute import permute_positions, position_permutation
from layerlab.experiments.report import compare_table, write_outputs

__all__ = ["CompareResult", "DEFAULT_MODELS", "DEFAULT_RECIPE", "RunRecord", "compare_table", "permute_positions",
           "position_permutation", "run_compare", "write_outputs"]
