"""The workspace as a user meets it: CLI, doctor, packages, colcon install layout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ['legion_core', 'legion_kuka', 'legion_ros', 'legion_bringup']


def legion(*args, env=None):
    return subprocess.run([sys.executable, '-m', 'legion_core.cli.main', *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_every_subcommand_has_help():
    top = legion('--help')
    assert top.returncode == 0
    commands = ['doctor', 'train', 'eval', 'report', 'bench', 'kuka', 'launch', 'sim', 'instruct']
    for command in commands:
        assert command in top.stdout
        proc = legion(command, '--help')
        assert proc.returncode == 0, f'legion {command} --help failed:\n{proc.stderr}'
        assert 'unavailable' not in proc.stdout, proc.stdout


def test_doctor_passes_on_a_set_up_machine():
    proc = legion('doctor', '--json')
    report = json.loads(proc.stdout)
    failed = [c for c in report['checks'] if c['ok'] is False]
    assert proc.returncode == 0 and report['ok'], failed
    names = {c['name'] for c in report['checks']}
    assert {'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID', 'GPU', 'sentence model'} <= names


def test_doctor_names_a_missing_package_and_its_fix(tmp_path):
    # Hide torch behind a shadowing module that fails to import, as in a venv that lacks it.
    (tmp_path / 'sitecustomize.py').write_text(
        'import importlib.metadata as m\n'
        '_orig = m.version\n'
        'def version(name):\n'
        '    if name == "metaworld":\n'
        '        raise m.PackageNotFoundError(name)\n'
        '    return _orig(name)\n'
        'm.version = version\n')
    env = {**os.environ, 'PYTHONPATH': str(tmp_path)}
    proc = legion('doctor', env=env)
    assert proc.returncode == 1
    assert 'metaworld' in proc.stderr and 'not installed' in proc.stderr
    assert 'make setup' in proc.stderr


def test_tests_run_on_loopback_in_their_own_domain():
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 1 <= int(os.environ['ROS_DOMAIN_ID']) <= 101


@pytest.mark.parametrize('package', PACKAGES)
def test_package_is_a_valid_ament_python_package(package):
    import xml.etree.ElementTree as ET

    root = ROOT / 'src' / package
    manifest = ET.parse(root / 'package.xml').getroot()
    assert manifest.get('format') == '3'
    assert manifest.findtext('name') == package
    assert manifest.find('export/build_type').text == 'ament_python'
    assert (root / 'resource' / package).is_file()
    assert f'install_scripts=$base/lib/{package}' in (root / 'setup.cfg').read_text()
    assert "extras_require={'test'" in (root / 'setup.py').read_text()


def test_colcon_installed_bringup_share_has_launch_config_urdf():
    # scripts/test.sh builds the workspace with colcon before these tests run.
    share = ROOT / 'install' / 'legion_bringup' / 'share' / 'legion_bringup'
    if not share.exists():
        pytest.skip('workspace not built with colcon (run scripts/test.sh)')
    for folder, pattern in [('launch', '*.launch.py'), ('config', '*.yaml'), ('urdf', '*.urdf')]:
        assert list((share / folder).glob(pattern)), f'nothing installed in share/legion_bringup/{folder}'
    for package in ['legion_core', 'legion_ros']:
        assert (ROOT / 'install' / package).is_dir()
    assert (ROOT / 'install' / 'legion_ros' / 'lib' / 'legion_ros' / 'sim_bridge').exists()
