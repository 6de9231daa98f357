"""Frames: quaternions, rigid transforms and their control-loop shortcuts, the default task frame."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legion_kuka.description import METAWORLD_BASE_POSE
from legion_kuka.frames import Frame, default_task_frame, matrix_to_quat, quat_to_matrix


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1))
def test_quaternion_matrix_round_trip(values):
    quat = np.asarray(values) / np.linalg.norm(values)
    rot = quat_to_matrix(quat)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    back = matrix_to_quat(rot)
    assert back[0] >= 0
    assert min(np.abs(back - quat).max(), np.abs(back + quat).max()) < 1e-9  # q and -q: one rotation


def test_frame_forms_agree_and_invert():
    yaw = 0.7
    quat = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
    rot = quat_to_matrix(quat)
    forms = [Frame.of((1.0, 2.0, 3.0, yaw)), Frame.of(([1, 2, 3], quat)),
             Frame.of(([1, 2, 3], rot)), Frame.of(Frame(rot, [1, 2, 3]).matrix)]
    for frame in forms:
        assert np.allclose(frame.matrix, forms[0].matrix, atol=1e-12)
    point = np.array([0.3, -0.2, 0.5])
    assert np.allclose(forms[0].inverse().apply(forms[0].apply(point)), point)
    assert np.allclose(forms[0].compose(forms[0].inverse()).matrix, np.eye(4), atol=1e-12)
    with pytest.raises(ValueError, match='pose must be'):
        Frame.of(object())
    with pytest.raises(ValueError, match='not the text'):
        Frame.of('base')
    with pytest.raises(ValueError, match='proper rotation'):
        Frame(np.diag([1.0, 1.0, -1.0]), np.zeros(3))


_unit = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1)


@settings(max_examples=100, deadline=None)
@given(turn=_unit, quat=_unit, offset=st.lists(st.floats(-2, 2), min_size=3, max_size=3),
       points=st.lists(st.floats(-2, 2), min_size=6, max_size=6))
def test_the_control_loop_shortcuts_equal_the_matrix_forms(turn, quat, offset, points):
    # apply_point / apply on one point / rotate_quat are the per-cycle float paths of real2sim and sim2real:
    # they must give what the rotation matrices give.
    frame = Frame.of((offset, turn))
    batch = np.asarray(points).reshape(2, 3)
    expected = batch @ frame.rotation.T + frame.translation
    assert np.allclose(frame.apply(batch), expected, atol=1e-12)
    for point, want in zip(batch, expected, strict=True):
        assert np.allclose(frame.apply(point), want, atol=1e-12)
        assert np.allclose(frame.apply_point(point.tolist()), want, atol=1e-12)
    rotated = frame.rotate_quat(quat)
    assert rotated[0] >= 0 and math.isclose(np.linalg.norm(rotated), 1.0)
    assert np.allclose(quat_to_matrix(rotated), frame.rotation @ quat_to_matrix(quat), atol=1e-12)
    with pytest.raises(ValueError, match='zero norm'):
        frame.rotate_quat([0.0, 0.0, 0.0, 0.0])


def test_default_task_frame_is_the_inverse_of_the_base_placement():
    # METAWORLD_BASE_POSE puts the base at (0, 0.1, 0) facing +y: the robot's x axis is Meta-World's y.
    frame = default_task_frame()
    base_in_world = Frame.of(METAWORLD_BASE_POSE)
    assert np.allclose(frame.apply(base_in_world.apply([0.5, 0.0, 0.2])), [0.5, 0.0, 0.2])
    assert np.allclose(base_in_world.apply([0.5, 0.0, 0.2]), [0.0, 0.6, 0.2], atol=1e-12)
