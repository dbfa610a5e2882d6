"""More generated cases of :mod:`tests.test_fuzz_files` (another test name: other derandomized cases), in
a module of its own so that the two halves run on both CI workers."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from tests.test_fuzz_files import (
    CONFIG_CHANGES,
    FILE_FORM,
    TABLE_CHANGE,
    N,
    check_outcomes,
    validate_case,
    world,  # noqa: F401 - the fixture
)

OUTCOMES: dict[str, int] = {}


@settings(max_examples=N, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(changes=st.lists(TABLE_CHANGE, min_size=0, max_size=3), forms=st.lists(FILE_FORM, min_size=1, max_size=3),
       cfg_changes=CONFIG_CHANGES, pick=st.integers(0, 1000))
def test_more_files_and_configs_end_in_counts_or_a_documented_exit(world, tmp_path_factory, changes,  # noqa: F811
                                                                   forms, cfg_changes, pick):
    validate_case(world, tmp_path_factory, changes, forms, cfg_changes, pick, OUTCOMES)


def test_more_file_fuzz_reached_every_kind_of_outcome():
    check_outcomes(OUTCOMES, N)
