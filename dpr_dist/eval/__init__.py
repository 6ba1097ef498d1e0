"""Evaluation: candidate sets from similar training patients and package metrics (paper 5.1.1)."""

from dpr_dist.eval.candidate_sets import Candidates
from dpr_dist.eval.candidates import CandidateIndex, brute_force_topk
from dpr_dist.eval.metrics import (
    ANTAGONISM,
    antagonism_rate,
    mean_package_size,
    oracle_ceiling,
    package_prf,
    summarize,
    topk_drugs,
)
from dpr_dist.eval.package_csr import PackageCSR, gather_rows, multihot, packages_to_csr

__all__ = [
    "ANTAGONISM",
    "CandidateIndex",
    "Candidates",
    "PackageCSR",
    "antagonism_rate",
    "brute_force_topk",
    "gather_rows",
    "mean_package_size",
    "multihot",
    "oracle_ceiling",
    "package_prf",
    "packages_to_csr",
    "summarize",
    "topk_drugs",
]
