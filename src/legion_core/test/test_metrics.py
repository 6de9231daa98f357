"""Success-matrix metrics against hand-computed values (legion-original.md §6.2)."""
import json
import math

import numpy as np
import pytest

from legion_core.metrics import SuccessMatrix, cluster_purity, stream_average, summarise

# Rows: end of phase j; columns: task k (phase k trains task k).
E = np.array([
    [0.8, 0.1, 0.0],
    [0.95, 0.9, 0.2],
    [0.5, 1.0, 0.7],
])


def test_summary_of_a_hand_computed_example():
    s = summarise(E)
    assert s['final_success'] == pytest.approx((0.5 + 1.0 + 0.7) / 3)
    assert s['per_task_final'] == [0.5, 1.0, 0.7]
    assert s['own_phase'] == pytest.approx((0.8 + 0.9 + 0.7) / 3)
    # F = mean over k < 2 of E[k,k] - E[2,k] = ((0.8 - 0.5) + (0.9 - 1.0)) / 2
    assert s['forgetting'] == pytest.approx(0.1)
    # max over j in [k, 1] of E[j,k] - E[2,k]: task 0 peaks at 0.95 in phase 1, task 1 at 0.9.
    assert s['max_forgetting'] == pytest.approx(((0.95 - 0.5) + (0.9 - 1.0)) / 2)


def test_backward_transfer_gives_negative_forgetting():
    improving = np.array([[0.2, 0.0], [0.6, 0.5]])
    s = summarise(improving)
    assert s['forgetting'] == pytest.approx(-0.4) and s['max_forgetting'] == pytest.approx(-0.4)


def test_multitask_has_one_phase_and_no_forgetting():
    s = summarise(np.array([[1.0, 0.5, 0.0, 0.5]]))
    assert s['final_success'] == pytest.approx(0.5) and s['own_phase'] == pytest.approx(0.5)
    assert s['forgetting'] is None and s['max_forgetting'] is None
    json.dumps(s, allow_nan=False)  # strict JSON: undefined numbers are null, never NaN


def test_success_matrix_records_cells_and_leaves_the_rest_nan():
    matrix = SuccessMatrix(['reach-v3', 'push-v3', 'door-open-v3'])
    matrix.record(0, 0, 0.8)
    matrix.record(0, 1, 0.1)
    assert matrix.matrix.shape == (1, 3) and math.isnan(matrix.matrix[0, 2])
    matrix.record(1, 1, 0.9)
    matrix.record(1, 1, 1.0)  # the last evaluation of a phase replaces the earlier one
    assert matrix.to_list() == [[0.8, 0.1, None], [None, 1.0, None]]
    s = matrix.summarise()  # a stream stopped after phase 1 (task 2 never trained)
    assert s['own_phase'] == pytest.approx(0.9) and s['forgetting'] is None  # E[0,0]-E[1,0] unknown
    for j, row in enumerate(E):
        for k, value in enumerate(row):
            matrix.record(j, k, value)
    np.testing.assert_allclose(matrix.matrix, E)
    assert matrix.summarise()['forgetting'] == pytest.approx(0.1)


@pytest.mark.parametrize(('args', 'message'), [
    ((3, 0, 0.5), 'phase 3'),
    ((0, 5, 0.5), 'task index 5'),
    ((0, 0, 1.5), r'\[0, 1\]'),
    ((0, 0, float('nan')), r'\[0, 1\]'),
])
def test_record_rejects_bad_cells(args, message):
    with pytest.raises(ValueError, match=message):
        SuccessMatrix(['a', 'b', 'c']).record(*args)


def test_summarise_rejects_bad_matrices():
    with pytest.raises(ValueError, match='phases'):
        summarise(np.zeros((3, 2)))
    with pytest.raises(ValueError, match='shape'):
        summarise(np.zeros(3))
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        summarise(np.array([[2.0]]))


def test_stream_average():
    assert stream_average([0.0, 0.5, 1.0, float('nan')]) == pytest.approx(0.5)
    assert stream_average([]) is None


def test_cluster_purity():
    tasks = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_purity([7, 7, 3, 3, 5, 5], tasks) == 1.0  # one cluster per task
    assert cluster_purity([0, 0, 0, 0, 0, 0], tasks) == pytest.approx(1 / 3)
    assert cluster_purity([0, 0, 0, 1, 1, 1], tasks) == pytest.approx(4 / 6)  # hand count: 2 + 2
    assert cluster_purity([0, 1, 2, 3, 4, 5], tasks) == 1.0  # over-splitting is not penalised
    with pytest.raises(ValueError, match='equally long'):
        cluster_purity([0, 1], tasks)


def test_a_lifelong_run_after_its_first_phase_is_not_multitask():
    row = np.array([[0.9, 0.1, 0.2]])
    s = summarise(row, multitask=False)
    assert s['own_phase'] == pytest.approx(0.9) and s['forgetting'] is None
    assert s['final_success'] == pytest.approx(0.4)
    matrix = SuccessMatrix(['a', 'b', 'c'])  # lifelong: one phase per task
    for k, value in enumerate(row[0]):
        matrix.record(0, k, value)
    assert matrix.summarise()['own_phase'] == pytest.approx(0.9)
    multitask = SuccessMatrix(['a', 'b', 'c'], num_phases=1)
    for k, value in enumerate(row[0]):
        multitask.record(0, k, value)
    assert multitask.summarise()['own_phase'] == pytest.approx(0.4)
    with pytest.raises(ValueError, match='one phase'):
        summarise(E, multitask=True)
