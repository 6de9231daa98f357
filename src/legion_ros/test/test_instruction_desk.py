"""The instruction node's decisions (legion_ros.instruction_desk), without ROS: instructions in, status
events and the active step out."""
from __future__ import annotations

import json

from legion_ros.instruction_desk import InstructionDesk
from legion_ros.instructions import InstructionRejectedError, PlannedStep, Sequencer
from legion_ros.interfaces import INSTRUCTION

SKILLS = {'reach': 'reach-v3', 'push': 'push-v3', 'open the drawer': 'drawer-open-v3'}


class WordPlanner:
    """Steps split at ' then ', each matched by its words (the matchers are tested in test_instructions)."""

    def plan(self, text, max_bytes, max_steps):
        steps = text.split(' then ')
        unknown = [s for s in steps if s not in SKILLS]
        if unknown:
            raise InstructionRejectedError([{'code': 'no_match', 'message': f'no skill for {unknown}'}])
        return [PlannedStep(i, s, SKILLS[s], 1.0) for i, s in enumerate(steps)]


def desk(**kwargs):
    notes = []
    made = InstructionDesk(WordPlanner(), Sequencer(step_timeout_s=5.0), max_bytes=256, max_steps=4,
                           max_pending=kwargs.pop('max_pending', 4),
                           notify=lambda state, **fields: notes.append((state, fields)), **kwargs)
    return made, notes


def planned(d, text, now=0.0, ident=None):
    payload = json.dumps({'id': ident, 'text': text}) if ident else text
    assert d.receive(payload.encode()) == []
    return d.plan_next(now)


def test_an_instruction_in_words_becomes_a_sequence_run_step_by_step():
    d, _ = desk()
    events = planned(d, 'reach then push', ident='job-1')
    assert [e['event'] for e in events] == ['queued', 'step_started']
    assert events[-1]['instruction_id'] == 'job-1'
    assert [s['task'] for s in events[-1]['steps']] == ['reach-v3', 'push-v3']
    assert d.active_step() == (True, d.sequencer.active) and d.sequencer.active.task == 'reach-v3'
    assert d.active_step()[0] is False  # unchanged: not published again
    report = {'success': True, 'task': 'reach-v3', 'index': 0, 'sequence_id': d.sequencer.sequence_id}
    assert d.step_success({**report, 'success': False}, 1.0) == []
    d.step_success(report, 1.0)
    assert d.sequencer.active.task == 'push-v3' and d.active_step()[0]
    events = d.step_success({**report, 'task': 'push-v3', 'index': 1}, 2.0)
    assert events[-1]['event'] == 'succeeded'
    assert d.active_step() == (True, None)


def test_words_no_skill_matches_are_rejected_and_counted():
    d, notes = desk()
    events = planned(d, 'dance', ident='job-2')
    assert [(e['event'], e['instruction_id']) for e in events] == [('rejected', 'job-2')]
    assert notes[-1][1]['rejected'] == {INSTRUCTION.name: 1}
    assert d.plan_next(0.0) == []  # nothing waiting


def test_a_latched_estop_halts_the_running_instruction_and_refuses_new_ones_until_cleared():
    d, _ = desk()
    planned(d, 'reach then push')
    events = d.arm_status({'state': 'estop', 'reasons': ['joint_jump']}, 1.0)
    assert events[-1]['state'] == 'failed' and 'e-stop (joint_jump)' in events[-1]['reasons'][-1]['message']
    assert d.sequencer.active is None
    events = planned(d, 'reach', now=2.0)
    assert events[-1]['event'] == 'rejected' and events[-1]['reasons'][0]['code'] == 'arm_stopped'
    d.arm_status({'state': 'tick'}, 3.0)  # an event, not a state: the e-stop still stands
    assert d.arm_stopped is not None
    d.arm_status({'state': 'holding'}, 3.0)
    assert d.arm_stopped is None
    assert planned(d, 'reach', now=4.0)[-1]['event'] == 'step_started'


def test_bad_messages_are_rejected_with_a_reason_never_planned():
    d, notes = desk(max_pending=1)
    events = d.receive(b'{"id": "x", "text": 3}')
    assert events[-1]['event'] == 'rejected' and events[-1]['reasons'][0]['code'] == 'malformed'
    assert d.malformed('truncated std_msgs/String message')[-1]['reasons'][0]['code'] == 'malformed'
    d.bad_input('/legion/step_success', 'malformed step_success: no')
    assert notes[-1][1]['rejected'] == {INSTRUCTION.name: 2, '/legion/step_success': 1}
    assert d.receive(b'reach') == []
    assert d.receive(b'push')[-1]['reasons'][0]['code'] == 'queue_full'  # max_pending 1
    assert d.plan_next(0.0)[-1]['event'] == 'step_started'  # the waiting one
    assert d.receive(b'{"id": "a", "text": "reach"}') == []
    assert d.receive(b'{"id": "a", "text": "reach"}') == [] and d.duplicates == 1  # a resend: taken once
    assert d.plan_next(1.0)[-1]['instruction_id'] == 'a' and d.plan_next(1.0) == []


def test_cancel_and_skip_say_whether_anything_was_running_and_a_step_times_out():
    d, _ = desk()
    assert d.cancel(0.0) == ([], 'nothing is running')
    planned(d, 'reach then push then reach')
    events, message = d.skip(1.0)
    assert message == 'skipped step 1 (reach-v3)' and d.sequencer.active.task == 'push-v3'
    assert events
    assert d.sequencer.tick(7.0)[0]['steps'][1]['state'] == 'failed'  # 5 s timeout on push
    events, message = d.cancel(8.0)
    assert message == 'cancelled' and events[-1]['event'] == 'cancelled'


def test_with_a_step_clock_events_carry_it_and_steps_are_timed_in_twin_time():
    d, _ = desk(step_clock='/clock')
    d.twin_time.update(10.0, 100.0)
    d.twin_time.update(10.5, 101.0)
    assert d.now(999.0) == d.twin_time.elapsed_s
    (event,) = d.stamped([{'event': 'x'}], 42.0, 101.0)
    assert event['stamp'] == 42.0 and event['step_clock'] == '/clock'
    assert 'real_time_factor' in event
    plain, _ = desk()
    assert plain.now(7.0) == 7.0 and plain.stamped([{}], 1.0, 1.0) == [{'stamp': 1.0}]


def sim2real(lifecycle, state=None):
    """sim2real's status in ``lifecycle`` (state: the arm's while active, else the lifecycle's)."""
    return {'node': '/legion/sim2real', 'state': state or ('holding' if lifecycle == 'active' else lifecycle),
            'lifecycle': lifecycle}


def test_while_sim2real_is_inactive_the_step_waits_with_its_clock_paused_then_goes_on():
    """Issue #13: `ros2 lifecycle set /legion/sim2real deactivate` held the arm, and the step failed on
    its timeout as if the arm had been working on it."""
    d, _ = desk()
    assert d.arm_status(sim2real('active'), 0.0) == []
    planned(d, 'reach then push', now=0.0)
    (event,) = d.arm_status(sim2real('inactive'), 1.0)
    assert event['event'] == 'step_paused' and event['state'] == 'running'
    assert event['waiting']['code'] == 'sim2real_inactive' and event['waiting']['sim2real'] == 'inactive'
    assert 'waiting for sim2real to be active (it is inactive)' in event['waiting']['message']
    assert 'ros2 lifecycle set /legion/sim2real activate' in event['waiting']['message']
    assert d.arm_status(sim2real('inactive'), 2.0) == []  # sim2real repeats its status every second
    assert d.tick(600.0) == []  # an operator's ten minutes: no timeout
    assert d.arm_stopped is None and planned(d, 'push', now=601.0)[-1]['waiting']['sim2real'] == 'inactive'
    (event,) = d.arm_status(sim2real('active'), 610.0)
    assert event['event'] == 'step_resumed' and 'waiting' not in event
    assert d.tick(613.9) == []  # the step had 5 s, and used 4 s of them before
    assert d.tick(615.0)[-1]['state'] == 'failed'


def test_sim2real_finalized_ends_the_instruction_and_refuses_new_ones_until_it_is_back():
    d, _ = desk()
    planned(d, 'reach then push', now=0.0)
    d.arm_status(sim2real('inactive'), 1.0)
    events = d.arm_status(sim2real('finalized'), 2.0)
    assert [e['event'] for e in events] == ['step_failed', 'failed']
    assert [s['state'] for s in events[-1]['steps']] == ['failed', 'cancelled']
    assert 'sim2real is finalized' in events[-1]['reasons'][0]['message']
    assert all('waiting' not in e for e in events)
    (event,) = planned(d, 'reach', now=3.0)
    assert event['state'] == 'rejected' and event['reasons'][0]['code'] == 'arm_unavailable'
    d.arm_status(sim2real('active'), 4.0)  # sim2real started again
    assert planned(d, 'reach', now=5.0)[-1]['event'] == 'step_started'


def test_an_instruction_fails_when_sim2real_stays_unconfigured():
    d, _ = desk(sim2real_unconfigured_s=30.0)
    planned(d, 'reach then push', now=0.0)
    d.arm_status(sim2real('inactive'), 1.0)
    (event,) = d.arm_status(sim2real('unconfigured'), 2.0)  # cleanup: the reason changes, said again
    assert event['event'] == 'step_paused' and event['waiting']['code'] == 'sim2real_unconfigured'
    assert 'fails if sim2real stays unconfigured for 30 s' in event['waiting']['message']
    assert d.tick(2.0) == [] and d.tick(31.9) == []
    events = d.tick(32.0)  # node clock: 30 s since it was seen unconfigured with a step waiting
    assert events[-1]['state'] == 'failed'
    assert 'sim2real stayed unconfigured for 30 s' in events[-1]['steps'][0]['reason']
    planned(d, 'reach', now=40.0)
    assert d.tick(40.0) == [] and d.tick(60.0) == []
    planned(d, 'push', now=60.0)  # preempts: the new instruction gets its own 30 s
    assert d.tick(60.0) == [] and d.tick(89.9) == []
    assert d.tick(90.0)[-1]['steps'][0]['task'] == 'push-v3'
    # Configured and activated in time, the step goes on.
    planned(d, 'reach', now=100.0)
    assert d.tick(100.0) == [] and d.tick(120.0) == []
    d.arm_status(sim2real('inactive'), 121.0)
    assert d.tick(200.0) == []  # inactive: no bound (the operator may cancel)
    assert d.arm_status(sim2real('active'), 201.0)[-1]['event'] == 'step_resumed'


def test_without_sim2real_status_or_without_its_lifecycle_nothing_waits():
    d, _ = desk()
    planned(d, 'reach', now=0.0)
    assert d.arm_status({'state': 'input_rejected', 'topic': '/legion/action'}, 1.0) == []  # an event
    assert d.arm_status({'state': 'holding'}, 1.0) == [] and d.sim2real is None
    assert d.tick(5.0)[-1]['state'] == 'failed'  # times out as before


def test_an_estop_while_inactive_halts_and_its_reset_while_inactive_clears_it():
    d, _ = desk()
    planned(d, 'reach', now=0.0)
    events = d.arm_status(sim2real('inactive', state='estop'), 1.0)
    assert events[-1]['state'] == 'failed' and d.arm_stopped is not None
    d.arm_status(sim2real('inactive'), 2.0)  # reset while inactive: the status reads its lifecycle again
    assert d.arm_stopped is None
    assert planned(d, 'reach', now=3.0)[-1]['waiting']['sim2real'] == 'inactive'


def test_legion_instruct_prints_the_wait_plainly():
    from legion_ros.instruct_cli import describe_event

    d, _ = desk()
    planned(d, 'reach', now=0.0)
    (paused,) = d.arm_status(sim2real('inactive'), 1.0)
    line = describe_event(paused)
    assert line.startswith('step 1/1 reach-v3: running - waiting for sim2real to be active (it is inactive)')
    (resumed,) = d.arm_status(sim2real('active'), 4.0)
    assert describe_event(resumed) == ('step 1/1 reach-v3: running, going on (sim2real active again; paused '
                                       '3.0 s so far)')
