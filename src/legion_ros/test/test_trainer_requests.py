"""What the trainer node learns for a /legion/learn request (the node's resolution, without ROS)."""
from __future__ import annotations

import pytest

from legion_ros.instructions import InstructionRejectedError
from legion_ros.nodes.trainer import known_tasks, learn_matcher, resolve_task


@pytest.fixture(scope='module')
def resolve():
    tasks = known_tasks()
    matcher = learn_matcher(tasks)
    return lambda text: resolve_task(text, tasks, lambda: matcher)


@pytest.mark.parametrize(('text', 'task'), [
    ('pull the drawer out', 'drawer-open-v3'),  # the opposite of a legion10 skill: learnt as itself
    ('push the drawer back in', 'drawer-close-v3'),
    ('learn to open the window', 'window-open-v3'),
    ('move the gripper to the target point', 'reach-v3'),
])
def test_a_request_in_words_is_the_task_meant_not_its_opposite(resolve, text, task):
    assert resolve(text) == task


def test_a_task_named_is_taken_as_named_without_the_model():
    def no_model():
        raise AssertionError('a task name needs no sentence model')

    assert resolve_task('drawer-close', known_tasks(), no_model) == 'drawer-close-v3'
    assert resolve_task('Push-v3 ', known_tasks(), no_model) == 'push-v3'


def test_nonsense_is_refused_with_a_reason(resolve):
    with pytest.raises(InstructionRejectedError) as caught:
        resolve('bake a cake')
    assert caught.value.reasons
