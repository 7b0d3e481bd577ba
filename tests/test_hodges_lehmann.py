"""The gate's Hodges-Lehmann shift without the difference matrix equals the matrix's median."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.gate import hodges_lehmann as hl_module
from pytest_moeperf.gate.hodges_lehmann import hodges_lehmann

FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# few distinct values: ties everywhere, the case where the selection's pivots coincide
TIED = st.integers(min_value=0, max_value=3).map(float)
SAMPLES = st.lists(FLOATS, min_size=1, max_size=40) | st.lists(TIED, min_size=1, max_size=40)


def _outer_median(head, base) -> float:
    return float(np.median(np.subtract.outer(np.asarray(head, dtype=float), np.asarray(base, dtype=float))))


@settings(max_examples=300, deadline=None)
@given(head=SAMPLES, base=SAMPLES, gather=st.sampled_from([1, 3, 1 << 16]), sample=st.sampled_from([2, 7, 4096]))
def test_equals_the_outer_matrix_median(head, base, gather, sample):
    # small gather/sample sizes force the selection steps (bracketing, tie splitting) on small inputs
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hl_module, "_GATHER", gather)
        mp.setattr(hl_module, "_SAMPLE", sample)
        assert hodges_lehmann(np.asarray(head), np.asarray(base)) == _outer_median(head, base)


def test_larger_samples_take_the_selection_path_and_agree():
    rng = np.random.default_rng(3)
    head, base = rng.lognormal(3, 0.5, 700), rng.lognormal(3, 0.5, 900)  # 630,000 differences > _GATHER
    assert 700 * 900 > hl_module._GATHER
    assert hodges_lehmann(head, base) == _outer_median(head, base)
    assert hodges_lehmann(base, head) == _outer_median(base, head)


def test_empty_side_is_refused():
    with pytest.raises(ValueError, match="empty"):
        hodges_lehmann(np.empty(0), np.ones(3))

