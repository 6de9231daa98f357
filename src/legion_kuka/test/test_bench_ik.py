"""`legion bench ik` and `legion kuka urdf|info` through the real `legion` command line."""
import json
import xml.etree.ElementTree as ET

import pytest

from legion_core.cli.main import main
from legion_kuka import description as desc
from legion_kuka.cli import run_bench_ik


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bench_ik_prints_the_measurements_as_json(capsys):
    code, out, _ = _run(capsys, 'bench', 'ik', '--targets', '400', '--cold', '100', '--batch', '200',
                        '--no-progress')
    assert code == 0
    report = json.loads(out)
    for key in ('ik_solve_us_median', 'ik_solve_us_p99', 'ik_success_rate', 'targets', 'batch', 'cold',
                'meets_goals'):
        assert key in report
    assert report['targets'] == 400 and report['batch']['targets'] == 200
    assert report['ik_success_rate'] >= 0.99
    assert report['cold']['success_rate'] >= 0.99 and report['batch']['success_rate'] >= 0.99
    assert report['ik_position_error_max_m'] < 1e-4
    assert 0 < report['ik_solve_us_median'] <= report['ik_solve_us_p99']
    # The 200 us goal is what the benchmark reports; this shared 2-core CI box only gets a loose bound.
    assert report['ik_solve_us_median'] < 2000


def test_bench_ik_flange_tool_and_bad_step():
    report = run_bench_ik(targets=100, cold=20, batch=50, tool='flange', seed=3)
    assert report['tool'] == 'flange' and report['ik_success_rate'] >= 0.99
    assert report['workspace_low_m'][2] == pytest.approx(desc.WORKSPACE_LOW[2] + desc.GRIPPER.tcp_offset)
    with pytest.raises(ValueError, match='step'):
        run_bench_ik(targets=10, cold=1, batch=1, step=0.5)


def test_bench_ik_rejects_a_bad_count(capsys):
    with pytest.raises(SystemExit):
        main(['bench', 'ik', '--targets', '0'])
    assert 'positive integer' in capsys.readouterr().err


def test_kuka_urdf_writes_the_chosen_profile(capsys, tmp_path):
    target = tmp_path / 'iiwa7.urdf'
    code, _, err = _run(capsys, 'kuka', 'urdf', '--profile', 'iiwa_ros2', '--output', str(target))
    assert code == 0 and 'wrote' in err
    root = ET.parse(target).getroot()
    assert [j.get('name') for j in root.findall('joint') if j.get('type') == 'revolute'] == \
        desc.joint_names('iiwa_ros2')
    code, out, _ = _run(capsys, 'kuka', 'urdf')
    assert code == 0 and out == desc.urdf_text('lbr')


def test_kuka_info_reports_the_datasheet(capsys):
    code, out, _ = _run(capsys, 'kuka', 'info')
    assert code == 0
    info = json.loads(out)
    assert info['joint_names'] == desc.joint_names('lbr')
    assert info['mass_kg'] == pytest.approx(23.9)
    assert info['home_rad'] == list(desc.HOME)


def test_kuka_without_a_sub_command_prints_help(capsys):
    code, out, _ = _run(capsys, 'kuka')
    assert code == 2 and 'urdf' in out
