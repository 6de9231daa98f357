"""How a CLI calls one of the graph's services: an answer whenever a server exists, a clear error
otherwise, real rclpy over loopback."""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger

from legion_ros import services
from legion_ros.instruct_cli import spin_until

pytestmark = pytest.mark.ros


@pytest.fixture
def graph():
    """A CLI's node, spun by the CLIs' own spin_until, and a server node elsewhere (its own executor,
    in a thread), as the graph's nodes are to `legion sim`."""
    rclpy.init()
    node = rclpy.create_node('legion_services_test')
    elsewhere = SingleThreadedExecutor()
    thread = threading.Thread(target=elsewhere.spin, daemon=True)
    thread.start()
    yield elsewhere, node, lambda predicate, timeout_s: spin_until(node, predicate, timeout_s)
    elsewhere.shutdown()
    thread.join(5.0)
    node.destroy_node()
    rclpy.try_shutdown()


def _server(executor, answer: str):
    server = rclpy.create_node('server', namespace='/legion')

    def on_trigger(_request, response):
        response.success, response.message = True, answer
        return response

    server.create_service(Trigger, '/legion/probe', on_trigger)
    executor.add_node(server)
    return server


def test_a_client_rmw_leaves_not_ready_still_gets_its_answer(graph, monkeypatch):
    executor, node, spin = graph
    _server(executor, 'here')
    client = node.create_client(Trigger, '/legion/probe')
    assert spin(lambda: services.servers(node, client.srv_name)[0], 10.0)
    assert services.servers(node, client.srv_name)[0] == ['/legion/server']
    # rmw_fastrtps#792: the client's ready check fails for good although the server is there.
    monkeypatch.setattr(client, 'wait_for_service', lambda timeout_sec=None: False)
    answer = services.call(node, client, Trigger.Request(), spin, ready_s=0.1, answer_s=10.0)
    assert answer.success and answer.message == 'here'


def test_a_missing_service_fails_with_what_was_seen(graph):
    _executor, node, spin = graph
    client = node.create_client(Trigger, '/legion/nobody')
    started = time.monotonic()
    with pytest.raises(services.ServiceError, match=r'no server of /legion/nobody after 0\.5 s'):
        services.call(node, client, Trigger.Request(), spin, ready_s=0.5, answer_s=10.0)
    assert time.monotonic() - started < 5.0


def test_an_answer_that_does_not_come_in_time_is_withdrawn(graph):
    executor, node, spin = graph
    _server(executor, 'late')
    client = node.create_client(Trigger, '/legion/probe')
    assert client.wait_for_service(timeout_sec=10.0)

    def not_spinning(predicate, timeout_s):  # the answer comes, but this node does not take it in
        time.sleep(timeout_s)
        return predicate()

    with pytest.raises(services.ServiceError, match=r'did not answer within 0.2 s \(client ready: True'):
        services.call(node, client, Trigger.Request(), not_spinning, ready_s=10.0, answer_s=0.2)
    assert client._pending_requests == {}  # withdrawn: the answer coming now is dropped
    spin(lambda: False, 0.5)
