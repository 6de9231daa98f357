"""Jobs of any length: the workcells a job runs through, and every object's state carried between them."""
import numpy as np
import pytest

from legion_kuka.job import WorkcellPlan, plan_workcells, station_object
from legion_kuka.twin_driver import TwinDriver, build_twin
from legion_kuka.workcell import MAX_STATIONS, WorkcellTwin, station_order

SIX = ('reach-v3', 'push-v3', 'faucet-open-v3', 'drawer-close-v3', 'button-press-topdown-v3',
       'window-open-v3')


def test_window_open_and_close_work_on_one_object_and_other_tasks_on_their_own():
    assert station_object('window-open-v3') == station_object('window-close-v3') == 'sawyer_window_horizontal'
    assert len({station_object(t) for t in SIX}) == len(SIX)
    with pytest.raises(ValueError, match='unknown'):
        station_object('no-such-task-v3')


def test_six_different_skills_run_as_two_full_workcells_of_consecutive_steps():
    plan = plan_workcells(SIX)
    assert plan == [WorkcellPlan(tuple(station_order(SIX[:3])), (0, 1, 2)),
                    WorkcellPlan(tuple(station_order(SIX[3:])), (3, 4, 5))]
    assert all(len(w.stations) == MAX_STATIONS for w in plan)


def test_a_step_on_an_object_already_in_the_workcell_under_another_task_starts_the_next():
    assert [w.stations for w in plan_workcells(['window-open-v3', 'window-close-v3'])] == [
        ('window-open-v3',), ('window-close-v3',)]
    # The same task again stays at its station; the opposite task moves on, taking reach along after it.
    plan = plan_workcells(['window-open-v3', 'reach-v3', 'window-open-v3', 'window-close-v3', 'reach-v3'])
    assert [w.steps for w in plan] == [(0, 1, 2), (3, 4)]
    assert set(plan[1].stations) == {'window-close-v3', 'reach-v3'}


def test_plans_of_any_length_cover_every_step_once_in_order_within_the_station_limit():
    objects = {'a': 'x', 'b': 'y', 'c': 'z', 'd': 'w', 'e': 'x'}  # e works on a's object
    tasks = list('abcdaebbdca')
    plan = plan_workcells(tasks, object_of=objects.get)
    assert [s for w in plan for s in w.steps] == list(range(len(tasks)))
    for w in plan:
        assert len(w.stations) <= MAX_STATIONS
        assert {tasks[s] for s in w.steps} == set(w.stations)
        assert len({objects[t] for t in w.stations}) == len(w.stations)
    assert [w.steps for w in plan] == [(0, 1, 2), (3, 4), (5, 6, 7, 8), (9, 10)]
    with pytest.raises(ValueError):
        plan_workcells([])


def _joint(twin, task, name):
    """qpos address of ``name`` at ``task``'s station of the twin's current workcell."""
    return twin.model.joint(f'station{twin.tasks.index(task)}/{name}').qposadr[0]


def _station_pose(twin, task, body):
    """A body's pose in its station's own (task) frame: comparable across workcells and station places."""
    import mujoco

    mujoco.mj_forward(twin.model, twin.data)
    index = twin.tasks.index(task)
    place = twin._stations[task].place.inverse()
    b = twin.model.body(f'station{index}/{body}').id
    return place.apply(twin.data.xpos[b]), place.rotate_quat(twin.data.xquat[b])


def test_window_close_after_window_open_starts_from_the_window_as_the_open_step_left_it():
    twin = WorkcellTwin(job=['window-open-v3', 'window-close-v3'], seed=1)
    assert twin.tasks == ('window-open-v3',)
    slide = _joint(twin, 'window-open-v3', 'window_slide')
    assert twin.data.qpos[slide] == pytest.approx(0.0)  # window-open starts closed ...
    twin.data.qpos[slide] = 0.13  # ... and "opens" it most of the way
    frame_before = _station_pose(twin, 'window-open-v3', 'window')
    assert twin.enter('window-close-v3') == 'scene'
    assert (twin.tasks, twin.task, twin.workcell_index) == (('window-close-v3',), 'window-close-v3', 1)
    # Not window-close's own start (fully open, 0.2): the window left by the step before, where it stood.
    assert twin.data.qpos[_joint(twin, 'window-close-v3', 'window_slide')] == pytest.approx(0.13)
    frame_after = _station_pose(twin, 'window-close-v3', 'window')
    assert np.allclose(frame_after[0], frame_before[0], atol=1e-9)
    # The workcell's initial state is the one it was entered with: a reset that jogs the arm in (as the
    # twin's driver does where a start stands outside the limits) or ~/reset keeps the window.
    twin.reset(posture=twin.joint_state().position + 0.01)
    assert twin.data.qpos[_joint(twin, 'window-close-v3', 'window_slide')] == pytest.approx(0.13)
    assert not twin.task_success()
    # Its success is window-close's criterion on that window: closing it succeeds.
    twin.data.qpos[_joint(twin, 'window-close-v3', 'window_slide')] = 0.0
    twin._stale = True
    assert twin.task_success()


def test_six_skills_then_one_again_every_station_comes_back_as_it_was_left():
    job = [*SIX, 'push-v3']
    driver = TwinDriver(build_twin(job[0], seed=0, job=job), start_margin_rad=0.0)
    twin = driver.twin
    assert [w.stations for w in twin.plan][1:] == [tuple(station_order(SIX[3:])), ('push-v3',)]
    puck = twin.model.joint(f'station{twin.tasks.index("push-v3")}/objjoint').qposadr[0]
    twin.data.qpos[puck:puck + 2] += [0.03, -0.02]  # push moves the puck on its table
    moved = _station_pose(twin, 'push-v3', 'obj')
    events = [driver.load(task, 0, workcell=True) for task in job[1:]]
    assert events == ['station', 'station', 'scene', 'station', 'station', 'scene']
    assert twin.tasks == ('push-v3',) and twin.station_yaw() == 0.0  # it stood at +90 deg before
    back = _station_pose(twin, 'push-v3', 'obj')
    assert np.allclose(back[0], moved[0], atol=1e-6)
    assert np.allclose(np.abs(back[1] @ moved[1]), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match='no workcell of the job'):
        twin.enter('door-open-v3')


def test_a_job_twin_starts_at_its_first_step_and_takes_no_workcell_beside_it():
    with pytest.raises(ValueError, match='first step'):
        build_twin('push-v3', job=['reach-v3', 'push-v3'])
    with pytest.raises(ValueError, match='not both'):
        build_twin('reach-v3', job=['reach-v3'], workcell=['reach-v3'])


def test_experts_open_a_window_and_close_that_same_window_through_the_chain(monkeypatch):
    # Meta-World's experts through real2sim -> sim2real -> safety filter: window-close starts with the
    # window where window-open left it (it ends near fully open, window-close's own start is fully open at
    # another place on the table), and both succeed.
    from legion_kuka import workcell
    from legion_kuka.chain import expert_policy
    from legion_kuka.workcell import run_sequence

    slides, enter, transit = [], WorkcellTwin.enter, workcell.transit

    def watched_enter(twin, task):
        slides.append(float(twin.data.qpos[_joint(twin, twin.task, 'window_slide')]))  # as left
        return enter(twin, task)

    def watched_transit(twin, task, limits, **kwargs):  # the step's start: after the arm was jogged in
        slides.append(float(twin.data.qpos[_joint(twin, task, 'window_slide')]))
        return transit(twin, task, limits, **kwargs)

    monkeypatch.setattr(WorkcellTwin, 'enter', watched_enter)
    monkeypatch.setattr(workcell, 'transit', watched_transit)
    handles = {}

    def watching(task):
        policy = expert_policy(task)

        def act(obs):
            handles.setdefault(task, []).append(np.array(obs[4:7], dtype=float))
            return policy(obs)
        return act

    steps = run_sequence([(t, watching(t)) for t in ('window-open-v3', 'window-close-v3')], seed=1,
                         layout='full39')
    assert [s.success for s in steps] == [True, True]
    _, opened_from, left, found = slides  # entering the first station, its start, left, the next start
    assert opened_from == 0.0 and left > 0.1
    assert found == pytest.approx(left, abs=1e-9)  # window-close's own start: fully open (0.2)
    # Where the window stands: the same place (window-close's own placement for seed 1 is 9.5 cm off).
    assert handles['window-close-v3'][0][1] == pytest.approx(handles['window-open-v3'][-1][1], abs=1e-3)
