"""Tests of dpr_dist.eval.package_csr: packages in CSR form."""

from __future__ import annotations

import numpy as np

from dpr_dist.eval.package_csr import PackageCSR, gather_rows, packages_to_csr


def test_csr_helpers():
    csr = packages_to_csr([np.array([5, 6]), np.array([], dtype=int), np.array([7])])
    assert csr.indptr.tolist() == [0, 2, 2, 3] and csr.indices.tolist() == [5, 6, 7]
    sub = gather_rows(csr, np.array([2, 0, 1, 0]))
    assert sub.indptr.tolist() == [0, 1, 3, 3, 5] and sub.indices.tolist() == [7, 5, 6, 5, 6]
    assert isinstance(sub, PackageCSR)
