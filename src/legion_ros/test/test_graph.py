"""The graph descriptions: argument validation, placeholders, conditions, the --ros-args they produce."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from legion_ros.graph import (
    GRAPHS,
    Argument,
    ArgValue,
    Graph,
    GraphError,
    NodeSpec,
    fill,
    graph,
    parse_assignments,
    split_placeholders,
    when,
)


def test_a_default_outside_the_choices_is_rejected():
    with pytest.raises(GraphError, match='not one of'):
        Argument('driver', 'ur5', 'robot driver', ('lbr', 'iiwa_ros2'))


def test_placeholders_fill_and_split():
    assert fill('driver_{driver}.yaml', {'driver': 'lbr'}) == 'driver_lbr.yaml'
    assert split_placeholders('a_{x}/{y}.yaml') == [('text', 'a_'), ('arg', 'x'), ('text', '/'),
                                                     ('arg', 'y'), ('text', '.yaml')]
    assert split_placeholders('{x}') == [('arg', 'x')]
    with pytest.raises(GraphError, match='undeclared argument'):
        fill('{nope}', {})


def test_assignments_use_the_ros2_launch_syntax():
    assert parse_assignments(['driver:=lbr', 'checkpoint:=a:=b', 'x:=']) == {
        'driver': 'lbr', 'checkpoint': 'a:=b', 'x': ''}
    with pytest.raises(GraphError, match='name:=value'):
        parse_assignments(['driver=lbr'])


def test_sim_graph_speaks_the_chosen_driver():
    for driver in ('lbr', 'iiwa_ros2'):
        resolved = graph('sim').resolve({'driver': driver})
        bridge = next(n for n in resolved.nodes if n.name == 'sim_bridge')
        assert [p.name for p in bridge.parameter_files] == [f'driver_{driver}.yaml', 'sim_bridge.yaml']
        assert bridge.parameters['publish_clock'] is True and bridge.parameters['use_sim_time'] is False
        path = next(n for n in resolved.nodes if n.name == 'decision_path')
        assert path.parameter_files[0].name == f'driver_{driver}.yaml'
        assert path.parameters['use_sim_time'] is True
        policy = next(n for n in graph('sim').resolve({'driver': driver, 'composition': 'false'}).nodes
                      if n.name == 'policy')
        assert policy.parameter_files[0].name == f'driver_{driver}.yaml'
        assert policy.parameters['use_sim_time'] is True


def test_composition_hosts_the_command_path_in_one_process_with_each_node_named(tmp_path):
    for name in ('sim', 'real'):
        composed = {n.name: n for n in graph(name).resolve().nodes}
        separate = {n.name for n in graph(name).resolve({'composition': 'false'}).nodes}
        hosts = composed['decision_path'].hosts
        assert set(hosts) == {'real2sim', 'policy', 'sim2real'} and not set(hosts) & set(composed)
        assert separate == (set(composed) - {'decision_path'}) | set(hosts)
    path = next(n for n in graph('sim').resolve({'checkpoint': 'x.pt'}).nodes if n.name == 'decision_path')
    args = path.ros_args(tmp_path)
    assert '__node:=decision_path' not in args  # would rename all three nodes
    # every hosted node gets its config section and the inline parameters under its own name
    assert {p.name for p in path.parameter_files} >= {'sim2real.yaml', 'real2sim.yaml', 'policy.yaml'}
    files = [args[i + 1] for i, arg in enumerate(args) if arg == '--params-file']
    inline = yaml.safe_load(Path(files[-1]).read_text())  # the inline parameters come last
    assert set(inline) == {'/legion/sim2real', '/legion/real2sim', '/legion/policy'}
    assert all(v['ros__parameters']['checkpoint'] == 'x.pt' for v in inline.values())


def test_only_the_sim_graph_lets_sim2real_follow_scene_announcements():
    # A scene announcement re-anchors the safety filter after a jump; on a real arm nothing but the arm
    # moves it, so the real graph must never switch that on (the node's default is off).
    from legion_ros.nodes.sim2real import PARAMETERS

    assert PARAMETERS['accept_scenes'].default is False
    for name, expected in (('sim', True), ('real', None)):
        for composition in ('true', 'false'):
            nodes = {n.name: n for n in graph(name).resolve({'composition': composition}).nodes}
            carrier = nodes['decision_path' if composition == 'true' else 'sim2real']
            assert carrier.parameters.get('accept_scenes') is expected, (name, composition)


def test_recording_choice_selects_node_or_rosbag2():
    names = [n.name for n in graph('sim').resolve().nodes]
    assert 'recorder' not in names and graph('sim').resolve().processes == ()
    assert 'recorder' in [n.name for n in graph('sim').resolve({'record': 'true'}).nodes]
    resolved = graph('real').resolve({'record': 'true', 'recorder': 'rosbag2', 'bag_dir': '/data/bags'})
    assert 'recorder' not in [n.name for n in resolved.nodes]
    ((name, command),) = resolved.processes
    assert name == 'ros2_bag_record' and '/data/bags' in command[-1] and '--storage mcap' in command[-1]


def test_ros_args_match_what_launch_ros_passes(tmp_path):
    spec = NodeSpec('policy', 'policy', namespace='/legion', parameter_files=('policy.yaml',),
                    parameters={'checkpoint': ArgValue('checkpoint'), 'use_sim_time': ArgValue('sim', bool)},
                    remappings=(('in', '/{ns}/out'),))
    arguments = (Argument('checkpoint', '', 'c'), Argument('sim', 'false', 's', ('true', 'false')),
                 Argument('ns', 'lbr', 'n'), Argument('log_level', 'warn', 'l'))
    description = Graph('g', 'g', arguments, (spec,))
    (node,) = description.resolve({'checkpoint': 'runs/my run', 'sim': 'true'}).nodes
    inline = tmp_path / 'legion__policy.yaml'
    assert node.ros_args(tmp_path) == [
        '--ros-args', '-r', '__node:=policy', '-r', '__ns:=/legion',
        '--params-file', str(node.parameter_files[0]), '--params-file', str(inline),
        '-r', 'in:=/lbr/out', '--log-level', 'warn']
    # launch_ros writes inline parameters under the fully qualified node name, after the files.
    assert yaml.safe_load(inline.read_text()) == {
        '/legion/policy': {'ros__parameters': {'checkpoint': 'runs/my run', 'use_sim_time': True}}}
    assert node.fully_qualified_name == '/legion/policy'
    with pytest.raises(GraphError, match='needs a parameters_dir'):
        node.ros_args()


def test_conditions_need_all_arguments():
    condition = when(record='true', recorder='legion')
    assert condition.holds({'record': 'true', 'recorder': 'legion'})
    assert not condition.holds({'record': 'true', 'recorder': 'rosbag2'})
    assert sorted(condition.arguments()) == ['record', 'recorder']


def test_config_directory_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv('LEGION_CONFIG_DIR', str(tmp_path))
    with pytest.raises(GraphError, match='does not exist'):
        graph('train').resolve()
    (tmp_path / 'trainer.yaml').write_text('/**/trainer:\n  ros__parameters: {}\n')
    resolved = graph('train').resolve()
    assert resolved.nodes[0].parameter_files == (tmp_path / 'trainer.yaml',)


def test_unknown_graph():
    with pytest.raises(GraphError, match='one of: sim, real, train'):
        graph('moon')


def test_run_time_parameters_reach_each_hosted_node(tmp_path):
    """`legion sim --policy expert` sets policy_type on the policy node, wherever it runs."""
    extra = {'policy': {'policy_type': 'expert'}, 'real2sim': {'success_source': 'sim'}}
    for composition in ('true', 'false'):
        resolved = graph('sim').resolve({'composition': composition, 'checkpoint': 'c.pt'})
        sections = {}
        for node in resolved.nodes:
            configured = node.with_parameters(extra, tmp_path)
            assert configured.parameters == {}
            sections.update(yaml.safe_load(configured.parameter_files[-1].read_text()))
        # (in one process every hosted node also gets the others' inline parameters, undeclared by it)
        assert sections['/**/policy']['ros__parameters'].items() >= {
            'policy_type': 'expert', 'checkpoint': 'c.pt', 'use_sim_time': True}.items()
        assert sections['/**/real2sim']['ros__parameters']['success_source'] == 'sim'


def test_list_arguments_convert_to_string_lists():
    value = ArgValue('workcell', list)
    assert value.convert('') == [] and value.convert('  ') == []
    assert value.convert('reach-v3') == ['reach-v3']
    assert value.convert('reach-v3, drawer-close-v3,window-close-v3') == [
        'reach-v3', 'drawer-close-v3', 'window-close-v3']
    for bad in ('reach-v3,', ',reach-v3', 'reach-v3,,push-v3', 'reach-v3, ,push-v3'):
        with pytest.raises(GraphError, match='argument workcell has an empty item'):
            value.convert(bad)


def test_workcell_argument_reaches_sim_bridge_as_a_list():
    def bridge(**arguments):
        (node,) = [n for n in graph('sim').resolve(arguments).nodes if n.name == 'sim_bridge']
        return node.parameters

    assert bridge()['workcell'] == [] and bridge()['task'] == 'reach-v3'  # one task's scene, as before
    parameters = bridge(workcell='reach-v3,drawer-close-v3,window-close-v3', task='window-close-v3')
    assert parameters['workcell'] == ['reach-v3', 'drawer-close-v3', 'window-close-v3']
    assert parameters['task'] == 'window-close-v3'
    assert bridge(workcell='push-v3,reach-v3')['workcell'] == ['push-v3', 'reach-v3']  # task:=reach-v3
    assert 'workcell' in graph('sim').argument('workcell').description  # declared with its help
    assert 'task:=' in graph('sim').argument('workcell').description


@pytest.mark.parametrize(('workcell', 'task', 'message'), [
    ('reach-v3,push-v3,drawer-close-v3,window-close-v3', 'reach-v3',
     'names 4 stations; a workcell holds at most 3'),
    ('reach-v3,push-v3,reach-v3', 'reach-v3', 'names reach-v3 more than once'),
    ('push-v3,drawer-close-v3', 'reach-v3',
     'task:=reach-v3 is not one of the stations of workcell:=push-v3,drawer-close-v3; task:= picks the '
     'active station: one of push-v3, drawer-close-v3'),
    ('push-v3,,reach-v3', 'reach-v3', 'empty item'),
])
def test_bad_workcells_are_refused_before_any_node_starts(workcell, task, message):
    with pytest.raises(GraphError, match=re.escape(message)):
        graph('sim').resolve({'workcell': workcell, 'task': task})


def test_graph_checks_see_every_argument():
    seen = []
    checked = Graph('g', 'g', (Argument('a', 'x', 'a'), Argument('b', 'y', 'b')), (), checks=(seen.append,))
    checked.resolve({'b': 'z'})
    assert seen == [{'a': 'x', 'b': 'z'}]


def config_copy(tmp_path: Path, **files: str) -> Path:
    """The shipped config/ with some node files replaced (``policy='...'`` -> policy.yaml)."""
    import shutil

    from legion_ros.graph import config_directory

    config = tmp_path / 'config'
    shutil.copytree(config_directory(), config, ignore=shutil.ignore_patterns('train'))
    for name, text in files.items():
        (config / f'{name}.yaml').write_text(text)
    return config


@pytest.mark.parametrize('name', ['sim', 'real'])
@pytest.mark.parametrize('composition', ['true', 'false'])
def test_a_policy_rate_that_sim2real_does_not_share_is_refused(tmp_path, name, composition):
    config = config_copy(tmp_path, policy='/**/policy:\n  ros__parameters: {rate_hz: 5.0}\n')
    with pytest.raises(GraphError) as error:
        graph(name).resolve({'composition': composition}, config_dir=config)
    message = str(error.value)
    assert 'policy rate_hz is 5.0 (config/policy.yaml)' in message
    assert 'sim2real policy_rate_hz is 10.0 (the default in legion_ros/nodes/sim2real.py)' in message
    # Changed on both sides, the graph starts: the rule is equality, not the default.
    config = config_copy(tmp_path / 'both', policy='/**/policy:\n  ros__parameters: {rate_hz: 5.0}\n',
                         sim2real='/**/sim2real:\n  ros__parameters: {policy_rate_hz: 5.0}\n')
    graph(name).resolve({'composition': composition}, config_dir=config)


def test_the_twin_must_start_the_arm_inside_sim2reals_margin(tmp_path):
    config = config_copy(tmp_path, sim2real='/**/sim2real:\n  ros__parameters: {position_margin_deg: 8.0}\n')
    with pytest.raises(GraphError, match=r'sim_bridge start_inside_margin_deg is 5\.0 .* sim2real '
                                         r'position_margin_deg is 8\.0 \(config/sim2real\.yaml\)'):
        graph('sim').resolve(config_dir=config)
    graph('real').resolve(config_dir=config)  # no twin on the real arm: nothing to agree with


def test_the_twin_must_run_at_the_driver_profiles_controller_rate(tmp_path):
    profile = (config_copy(tmp_path) / 'driver_iiwa_ros2.yaml').read_text()
    config = config_copy(tmp_path / 'slow', driver_iiwa_ros2=profile.replace('controller_rate_hz: 100.0',
                                                                              'controller_rate_hz: 50.0'))
    graph('sim').resolve(config_dir=config)  # the lbr profile still agrees
    with pytest.raises(GraphError, match=r'sim_bridge control_rate_hz is 100\.0 .* sim2real driver\.'
                                         r'controller_rate_hz is 50\.0 \(config/driver_iiwa_ros2\.yaml\)'):
        graph('sim').resolve({'driver': 'iiwa_ros2'}, config_dir=config)


def test_the_shipped_graphs_keep_every_coupling(tmp_path):
    from legion_ros.graph import effective_parameter

    for name in GRAPHS:
        for values in ({}, {'composition': 'false'}) if name != 'train' else ({},):
            nodes = graph(name).resolve(values).nodes
            for coupling in graph(name).couplings:
                first, second = (effective_parameter(nodes, *side)
                                 for side in (coupling.first, coupling.second))
                assert first is not None and second is not None, (name, coupling)
                assert first[0] == second[0]
