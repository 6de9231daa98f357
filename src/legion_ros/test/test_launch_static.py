"""Static checks of the launch files, the graph descriptions and config/*.yaml, plus a real launch of
each launch file's description where ``launch``/``launch_ros`` are importable (a ROS 2 install)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
from pathlib import Path

import pytest
import yaml

from legion_ros.graph import GRAPHS, ArgValue, config_directory, fill, graph
from legion_ros.runner import console_scripts
from legion_ros.testing import flatten

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_DIR = ROOT / 'launch'
CONFIG_DIR = config_directory()


def all_argument_values(description):
    """Every combination of the arguments that have choices (the others at their defaults)."""
    with_choices = [a for a in description.arguments if a.choices]
    for values in itertools.product(*(a.choices for a in with_choices)):
        yield dict(zip((a.name for a in with_choices), values, strict=True))


def check_ros_params_file(path: Path) -> dict:
    """What rcl_yaml_param_parser accepts: node keys -> {ros__parameters: {...}}, typed leaves."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data, f'{path.name}: empty or not a mapping'
    for node_key, body in data.items():
        assert isinstance(node_key, str) and (node_key.startswith('/') or node_key.isidentifier()), node_key
        assert isinstance(body, dict) and set(body) == {'ros__parameters'}, \
            f'{path.name}: {node_key} must hold exactly ros__parameters'
        params = body['ros__parameters']
        assert isinstance(params, dict), f'{path.name}: ros__parameters must be a mapping'
        for name, value in flatten(params).items():
            assert value is not None, f'{path.name}: {name} has no value'
            if isinstance(value, list):
                assert value, f'{path.name}: {name} is an empty list, which rcl reads as "not set"'
                kinds = {type(item) for item in value}
                assert len(kinds) <= 1, f'{path.name}: {name} mixes types {kinds} (ROS arrays are uniform)'
                assert not kinds & {dict, list, type(None)}, f'{path.name}: {name} nests'
    return data


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_every_executable_is_a_console_script(name):
    scripts = console_scripts('legion_ros')
    for node in graph(name).nodes:
        assert node.package == 'legion_ros'
        assert node.executable in scripts, f'{node.executable} is not a console script of legion_ros'


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_arguments_are_declared_used_and_defaults_allowed(name):
    description = graph(name)
    declared = [a.name for a in description.arguments]
    assert len(declared) == len(set(declared)), 'an argument is declared twice'
    assert description.referenced_arguments() <= set(declared)
    assert set(declared) <= description.referenced_arguments(), 'a declared argument is never used'
    for argument in description.arguments:
        assert argument.description
        assert not argument.choices or argument.default in argument.choices


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_parameter_files_exist_for_every_choice_and_are_valid(name):
    description = graph(name)
    paths = set()
    for values in all_argument_values(description):
        for node in description.resolve(values).nodes:  # resolve() fails on a missing file
            paths.update(node.parameter_files)
    for path in paths:
        check_ros_params_file(path)


def test_every_config_file_is_valid_and_used():
    used = set()
    for name in GRAPHS:
        description = graph(name)
        for values in all_argument_values(description):
            for node in description.nodes:
                used.update(fill(f, {**{a.name: a.default for a in description.arguments}, **values})
                            for f in node.parameter_files)
    for path in sorted(CONFIG_DIR.glob('*.yaml')):
        check_ros_params_file(path)
        assert path.name in used, f'config/{path.name} is not used by any graph'


def test_node_files_only_set_declared_parameters():
    """A typo in config/<node>.yaml would silently be ignored by rclpy: compare with PARAMETERS."""
    checked = 0
    for name in GRAPHS:
        for node in graph(name).nodes:
            module = importlib.import_module(f'legion_ros.nodes.{node.executable}') \
                if importlib.util.find_spec(f'legion_ros.nodes.{node.executable}') else None
            declared = getattr(module, 'PARAMETERS', None)
            if declared is None:
                continue  # node not written yet, or it declares its parameters differently
            for file_name in node.parameter_files:
                if file_name.startswith('driver_'):
                    continue  # the driver profile is shared by all nodes (/**)
                data = yaml.safe_load((CONFIG_DIR / file_name).read_text())
                for key, body in data.items():
                    assert key.split('/')[-1] == node.name, f'{file_name}: key {key} is not for {node.name}'
                    unknown = set(flatten(body['ros__parameters'])) - set(declared)
                    assert not unknown, f'{file_name}: {sorted(unknown)} are not parameters of {node.name}'
            inline = {k for k, v in node.parameters.items() if k != 'use_sim_time'}
            assert inline <= set(declared), f'{node.name}: graph sets undeclared {inline - set(declared)}'
            checked += 1
    assert checked >= 2  # at least sim_bridge and recorder


def test_driver_profiles_name_seven_joints_and_their_topics():
    for driver, namespace, prefix in (('lbr', '/lbr', 'lbr_A'), ('iiwa_ros2', '/', 'joint_a')):
        profile = check_ros_params_file(CONFIG_DIR / f'driver_{driver}.yaml')
        params = flatten(profile['/**']['ros__parameters'])
        assert params['driver.name'] == driver
        assert params['driver.namespace'] == namespace
        assert params['driver.joint_names'] == [f'{prefix}{i}' for i in range(1, 8)]
        base = namespace.rstrip('/')
        assert params['driver.joint_states_topic'] == f'{base}/joint_states'
        assert params['driver.command_topic'] == f'{base}/forward_position_controller/commands'


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_launch_file_builds_its_graph_with_the_mixins(name):
    path = LAUNCH_DIR / f'{name}.launch.py'
    tree = ast.parse(path.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    calls = {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
             for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert f'{name}_graph' in calls, f'{path.name} does not build graph.{name}_graph()'
    assert {'arguments', 'session', 'node'} <= calls  # session: one domain, stop signals (launch_mixins)
    description = graph(name)
    if description.includes:
        assert 'include' in calls
    if description.processes:
        assert 'process' in calls
    if description.checks or description.couplings:  # workcell:= with task:=, coupled parameters
        assert 'checks' in calls


def read_back(node_spec, parameters_dir):
    """The parameters an rclpy node gets from ``node_spec.ros_args()`` (rcl's own parsing); an empty
    list comes back as ``None``: rcl reads it as "not set" (node_base then keeps the empty default)."""
    rclpy = pytest.importorskip('rclpy')
    from rclpy.parameter import Parameter

    context = rclpy.Context()
    rclpy.init(args=node_spec.ros_args(parameters_dir), context=context)
    try:
        node = rclpy.create_node('placeholder', context=context)
        values = {name: None if parameter.type_ == Parameter.Type.NOT_SET else parameter.value
                  for name, parameter in node._parameter_overrides.items()}
        node.destroy_node()
        return values
    finally:
        rclpy.try_shutdown(context=context)


def test_inline_parameter_values_survive_with_their_types(tmp_path):
    from legion_ros.graph import ResolvedNode
    values = {'text': 'reach-v3', 'path': 'runs/bags', 'empty': '', 'spaced': 'open the door',
              'looks_bool': 'true', 'looks_number': '1.5', 'quote': "it's", 'real': 20.0, 'whole': 3,
              'flag': False, 'names': ['lbr_A1', 'lbr_A2'], 'reals': [0.5, -1.0]}
    got = read_back(ResolvedNode('recorder', 'probe', '/legion', (), values, ()), tmp_path)
    for key, value in values.items():
        read = list(got[key]) if isinstance(value, list) else got[key]
        assert read == value, (key, got[key], value)
        sample, expected = (read[0], value[0]) if isinstance(value, list) else (read, value)
        assert type(sample) is type(expected), (key, got[key], value)  # 20.0 stays a double, '' a string


def test_launch_arguments_beat_the_node_parameter_files(tmp_path):
    """task:=push-v3 reaches the twin although its parameter file sets task, as under ros2 launch."""
    import shutil

    config = tmp_path / 'config'
    shutil.copytree(CONFIG_DIR, config, ignore=shutil.ignore_patterns('train'))
    (config / 'sim_bridge.yaml').write_text(
        '/**/sim_bridge:\n  ros__parameters: {task: reach-v3, object_poses_rate_hz: 10.0}\n')
    (bridge,) = [n for n in graph('sim').resolve({'task': 'push-v3'}, config_dir=config).nodes
                 if n.name == 'sim_bridge']
    got = read_back(bridge, tmp_path)
    assert got['task'] == 'push-v3'
    assert got['driver.joint_states_topic'] == '/lbr/joint_states'  # the driver profile still applies
    assert got['object_poses_rate_hz'] == 10.0  # and the node's own file


def test_workcell_argument_reaches_the_twin_as_a_string_list(tmp_path):
    """workcell:=a,b is a string[] for rcl; the default (empty) leaves the node's default, no stations."""
    arguments = {'workcell': 'reach-v3,push-v3', 'task': 'push-v3'}
    (bridge,) = [n for n in graph('sim').resolve(arguments).nodes if n.name == 'sim_bridge']
    got = read_back(bridge, tmp_path)
    assert list(got['workcell']) == ['reach-v3', 'push-v3'] and got['task'] == 'push-v3'
    (bridge,) = [n for n in graph('sim').resolve().nodes if n.name == 'sim_bridge']
    assert bridge.parameters['workcell'] == []
    assert read_back(bridge, tmp_path)['workcell'] is None  # rcl: [] is "not set"
    assert 'workcell' not in yaml.safe_load((CONFIG_DIR / 'sim_bridge.yaml').read_text())[
        '/**/sim_bridge']['ros__parameters'], 'workcell:= (empty) could not clear a workcell set there'


def test_workcell_limit_is_legion_kukas():
    workcell = pytest.importorskip('legion_kuka.workcell')
    from legion_ros.graph import WORKCELL_MAX_STATIONS
    assert workcell.MAX_STATIONS == WORKCELL_MAX_STATIONS


def test_arg_values_convert_to_ros_types():
    assert ArgValue('use_sim_time', bool).convert('true') is True
    assert ArgValue('seed', int).convert('7') == 7
    with pytest.raises(ValueError, match='true or false'):
        ArgValue('use_sim_time', bool).convert('yes')


@pytest.mark.parametrize('name', sorted(GRAPHS))
def test_launch_file_produces_a_launch_description(name):
    """With a ROS 2 install: the launch file loads and declares exactly the graph's arguments."""
    pytest.importorskip('launch_ros')  # first: the top-level launch/ folder also imports as 'launch'
    pytest.importorskip('launch.actions')
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location(f'{name}_launch', LAUNCH_DIR / f'{name}.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert set(declared) == {a.name for a in graph(name).arguments}
    for argument in graph(name).arguments:
        assert declared[argument.name].default_value is not None
        if argument.choices:
            assert list(declared[argument.name].choices) == list(argument.choices)
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert len(nodes) == len(graph(name).nodes)


def sim_launch_parameters(arguments: dict):
    """sim.launch.py under ROS 2 launch: run its checks and evaluate sim_bridge's inline parameters as
    launch_ros does for the given ``name:=value`` arguments (the parameter files need an install)."""
    pytest.importorskip('launch_ros')
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node
    from launch_ros.utilities import evaluate_parameters, normalize_parameters

    spec = importlib.util.spec_from_file_location('sim_launch', LAUNCH_DIR / 'sim.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            default = ''.join(s.perform(context) for s in entity.default_value)
            context.launch_configurations[entity.name] = arguments.get(entity.name, default)
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            entity.execute(context)
    bridge = next(e for e in description.entities if isinstance(e, Node))
    inline = [p for p in bridge._Node__parameters if isinstance(p, dict)]
    (evaluated,) = evaluate_parameters(context, normalize_parameters(inline))
    return evaluated


def test_ros2_launch_passes_the_workcell_as_legion_launch_does():
    evaluated = sim_launch_parameters({'workcell': 'reach-v3, push-v3', 'task': 'push-v3'})
    assert list(evaluated['workcell']) == ['reach-v3', 'push-v3'] and evaluated['task'] == 'push-v3'
    assert list(sim_launch_parameters({})['workcell']) == []
    from legion_ros.graph import GraphError
    with pytest.raises(GraphError, match='task:=reach-v3 is not one of the stations'):
        sim_launch_parameters({'workcell': 'push-v3,drawer-close-v3'})
    with pytest.raises(GraphError, match='empty item'):
        sim_launch_parameters({'workcell': 'push-v3,', 'task': 'push-v3'})


def test_rcl_loads_every_config_file_as_written():
    """rcl's own YAML parser (not PyYAML) reads each file into the values and types we wrote."""
    rclpy = pytest.importorskip('rclpy')
    for path in sorted(CONFIG_DIR.glob('*.yaml')):
        data = yaml.safe_load(path.read_text())
        for key, body in data.items():
            name = key.split('/')[-1] if key.split('/')[-1] not in ('**', '*') else 'any_node'
            context = rclpy.Context()
            rclpy.init(args=['--ros-args', '--params-file', str(path)], context=context)
            try:
                node = rclpy.create_node(name, namespace='/legion', context=context,
                                         automatically_declare_parameters_from_overrides=True)
                for param, value in flatten(body['ros__parameters']).items():
                    got = node.get_parameter(param).value
                    got = list(got) if not isinstance(got, str) and hasattr(got, '__len__') else got
                    assert got == value, f'{path.name}: {param} reads back as {got!r}, wrote {value!r}'
                    if not isinstance(value, list):
                        assert type(got) is type(value), f'{path.name}: {param} is {type(got)}'
                node.destroy_node()
            finally:
                rclpy.try_shutdown(context=context)


def test_train_choices_name_existing_hydra_configs():
    from legion_ros.graph import TRAIN_CONFIGS
    train = ROOT / 'config' / 'train'
    assert (train / 'config.yaml').is_file()
    for name in TRAIN_CONFIGS:
        assert name == 'legion' or (train / 'preset' / f'{name}.yaml').is_file(), name
