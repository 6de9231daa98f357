"""Discovery defaults and domain leases: runs must never see each other's DDS traffic."""
import os
import subprocess
import sys

from legion_ros.environment import (
    DISCOVERY_VAR,
    DOMAIN_VAR,
    _held,
    apply_ros_defaults,
    lease_dir,
    lease_domain,
    running_graph_domain,
)

HOLD_LEASE = '''
import sys, time
from legion_ros.environment import lease_domain
lease = lease_domain(role=sys.argv[1])
print(lease.domain_id, flush=True)
sys.stdin.readline()
'''


def hold_lease_in_child(role='run'):
    child = subprocess.Popen([sys.executable, '-c', HOLD_LEASE, role], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    return child, int(child.stdout.readline())


def test_defaults_keep_dds_on_loopback_and_pick_a_nonzero_domain():
    env = {}
    lease = apply_ros_defaults(env)
    try:
        assert env[DISCOVERY_VAR] == 'LOCALHOST'
        assert 1 <= int(env[DOMAIN_VAR]) <= 101
        assert lease is not None and lease.domain_id == int(env[DOMAIN_VAR])
    finally:
        lease.release()


def test_user_settings_win():
    env = {DISCOVERY_VAR: 'SUBNET', DOMAIN_VAR: '7'}
    lease = apply_ros_defaults(env)
    try:
        assert env == {DISCOVERY_VAR: 'SUBNET', DOMAIN_VAR: '7'}
    finally:
        if lease is not None:
            lease.release()


def test_a_run_on_an_exported_domain_keeps_leasing_runs_off_it():
    # A test session leased the domain of a running `ROS_DOMAIN_ID=78 legion sim` (nobody held its lock)
    # and its instruction node's steps reached that graph's policy (docs/experts.md).
    child, taken = hold_lease_in_child()
    child.communicate('\n', timeout=10)  # a domain that was free a moment ago
    env = {DOMAIN_VAR: str(taken)}
    lease = apply_ros_defaults(env, role='graph')
    try:
        assert lease is not None and lease.domain_id == taken and env[DOMAIN_VAR] == str(taken)
        assert running_graph_domain() == taken  # clients find it as any graph
        assert _held(lease_dir() / f'{taken}.lock')  # lease_domain() skips it
        # a second process on the same exported domain (the graph's nodes, a client) still runs there
        second = {DOMAIN_VAR: str(taken)}
        assert apply_ros_defaults(second) is None and second[DOMAIN_VAR] == str(taken)
    finally:
        lease.release()


def test_an_exported_domain_outside_the_leased_range_is_used_as_it_is():
    for value in ('0', '150', 'x'):
        env = {DOMAIN_VAR: value}
        assert apply_ros_defaults(env) is None and env[DOMAIN_VAR] == value


def test_concurrent_runs_never_share_a_domain():
    children = [hold_lease_in_child() for _ in range(3)]
    try:
        mine = [lease_domain() for _ in range(5)]
        domains = [d for _, d in children] + [lease.domain_id for lease in mine]
        assert int(os.environ[DOMAIN_VAR]) not in domains  # this pytest process holds its own
        assert len(set(domains)) == len(domains)
    finally:
        for lease in mine:
            lease.release()
        for child, _ in children:
            child.communicate('\n', timeout=10)


def test_a_lease_ends_with_its_process():
    child, domain = hold_lease_in_child()
    lock = lease_dir() / f'{domain}.lock'
    assert _held(lock)
    child.communicate('\n', timeout=10)
    assert not _held(lock)


def test_clients_join_the_running_graph():
    child, domain = hold_lease_in_child(role='graph')
    try:
        assert running_graph_domain() == domain
        env = {}
        assert apply_ros_defaults(env, join_graph=True) is None
        assert env[DOMAIN_VAR] == str(domain)
    finally:
        child.communicate('\n', timeout=10)
    assert running_graph_domain() != domain
