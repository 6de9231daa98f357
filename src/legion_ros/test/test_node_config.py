"""One source for every node parameter default: the node's ``PARAMETERS``.

``config/<node>.yaml`` (legion_bringup's data) sets only what a launched graph deliberately runs
differently from the code, and names in its comments every parameter a user may set there. The driver
profiles are the exception: each describes its driver whole, so that ``driver:=`` swaps every key.
"""
from __future__ import annotations

import importlib
import re

import pytest
import yaml

from legion_ros.graph import GRAPHS, config_directory, graph
from legion_ros.testing import flatten

CONFIG_DIR = config_directory()
PROFILE_ONLY = {'driver.namespace'}  # read by people and tools, declared by no node


def declared(node: str) -> dict:
    return importlib.import_module(f'legion_ros.nodes.{node}').PARAMETERS


def same(value, default) -> bool:
    """Equal as ROS reads them: 10 is not 10.0 (an int would be refused by a double parameter)."""
    default = list(default) if isinstance(default, tuple) else default
    return type(value) is type(default) and value == default


def node_files() -> list[str]:
    names = {name for graph_name in GRAPHS for spec in graph(graph_name).nodes
             for name in spec.parameter_files if not name.startswith('driver_')}
    return sorted(names)


def problems_of(file_name: str, text: str) -> list[str]:
    """Every way ``text`` (config/<file_name>) breaks the rule; empty when it keeps it."""
    node = file_name.removesuffix('.yaml')
    spec = declared(node)
    problems = []
    for key, body in yaml.safe_load(text).items():
        if key.split('/')[-1] != node:
            problems.append(f'{key}: a section for another node than {node}')
            continue
        for name, value in flatten(body['ros__parameters'] or {}).items():
            if name not in spec:
                problems.append(f'{name} is not a parameter of {node}')
            elif same(value, spec[name].default):
                problems.append(f'{name}: {value!r} is the default in legion_ros/nodes/{node}.py; '
                                'leave it to the code')
    comments = ' '.join(line for line in text.splitlines() if line.lstrip().startswith('#'))
    # driver.* come from the driver profile (driver_<driver>.yaml), the same for every node.
    unnamed = [name for name in spec if not name.startswith('driver.')
               and not re.search(rf'(?<![\w.]){re.escape(name)}(?!\w)', comments)]
    if unnamed:
        problems.append(f'the comments do not name {", ".join(unnamed)}, which a user may set here')
    return problems


@pytest.mark.parametrize('file_name', node_files())
def test_node_files_set_only_what_differs_from_the_code(file_name):
    assert not problems_of(file_name, (CONFIG_DIR / file_name).read_text(encoding='utf-8'))


def test_the_rule_catches_a_repeated_default_an_unknown_key_and_a_missing_name():
    text = (CONFIG_DIR / 'policy.yaml').read_text(encoding='utf-8')
    assert problems_of('policy.yaml', text) == []
    repeated = text.replace('ros__parameters: {}', 'ros__parameters: {rate_hz: 10.0, device: cuda}')
    assert problems_of('policy.yaml', repeated) == [
        "rate_hz: 10.0 is the default in legion_ros/nodes/policy.py; leave it to the code"]
    assert problems_of('policy.yaml', text.replace('{}', '{rate: 5.0}')) == [
        'rate is not a parameter of policy']
    assert problems_of('policy.yaml', text.replace('watch_checkpoint', 'watching')) == [
        'the comments do not name watch_checkpoint, which a user may set here']


def test_driver_profiles_are_whole_and_declared():
    profiles = {path.name: flatten(yaml.safe_load(path.read_text())['/**']['ros__parameters'])
                for path in sorted(CONFIG_DIR.glob('driver_*.yaml'))}
    assert len(profiles) >= 2
    keys = {name: set(values) for name, values in profiles.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1, f'profiles set different keys: {keys}'
    users = {node for graph_name in GRAPHS for spec in graph(graph_name).nodes
             if any(f.startswith('driver_') for f in spec.parameter_files)
             for node in spec.hosts or (spec.name,)}
    known = set().union(*(declared(node) for node in users)) | PROFILE_ONLY
    unknown = next(iter(keys.values())) - known
    assert not unknown, f'driver profiles set {sorted(unknown)}, which no node declares'
