"""`legion sim --scene`: which scenes a job runs on, decided before any process starts."""
from types import SimpleNamespace

from legion_ros.sim_cli import job_tasks, workcell_stations


def plan(*tasks):
    return [SimpleNamespace(task=t, instruction=t) for t in tasks]


def test_auto_runs_a_job_one_workcell_holds_there_and_any_other_as_a_sequence_of_workcells():
    three = plan('reach-v3', 'drawer-close-v3', 'window-close-v3')
    assert workcell_stations(three, 'auto') == ('drawer-close-v3', 'reach-v3', 'window-close-v3')
    assert job_tasks(three, 'auto') == ()
    six = plan('reach-v3', 'push-v3', 'faucet-open-v3', 'drawer-close-v3', 'button-press-topdown-v3',
               'window-open-v3')
    assert workcell_stations(six, 'auto') == () and job_tasks(six, 'auto') == tuple(p.task for p in six)
    # Two tasks on one window: one workcell would give each its own window; the sequence carries it over.
    pair = plan('window-open-v3', 'window-close-v3')
    assert workcell_stations(pair, 'auto') == () and job_tasks(pair, 'auto') == ('window-open-v3',
                                                                                 'window-close-v3')


def test_explicit_scenes_are_kept():
    pair = plan('window-open-v3', 'window-close-v3')
    assert workcell_stations(pair, 'workcell') == ('window-open-v3', 'window-close-v3')
    assert job_tasks(pair, 'workcell') == () and job_tasks(pair, 'per-step') == ()
    assert workcell_stations(pair, 'workcells') == () and job_tasks(pair, 'workcells') == tuple(
        p.task for p in pair)
    assert job_tasks(None, 'auto') == () and workcell_stations(None, 'auto') == ()
