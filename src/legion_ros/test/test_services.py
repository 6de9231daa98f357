"""How a CLI calls one of the graph's services: an answer whenever a server exists, a clear error
otherwise, real rclpy over loopback."""
from __future__ import annotations

import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_srvs.srv import Trigger

from legion_ros import services

pytestmark = pytest.mark.ros


@pytest.fixture
def graph():
    rclpy.init()
    executor = SingleThreadedExecutor()
    node = rclpy.create_node('legion_services_test')
    executor.add_node(node)

    def spin_until(predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            executor.spin_once(timeout_sec=0.05)
        return predicate()

    yield executor, node, spin_until
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def _server(executor, answer: str, delay_s: float = 0.0):
    server = rclpy.create_node('server', namespace='/legion')

    def on_trigger(_request, response):
        time.sleep(delay_s)
        response.success, response.message = True, answer
        return response

    server.create_service(Trigger, '/legion/probe', on_trigger)
    executor.add_node(server)
    return server


def test_a_client_rmw_leaves_not_ready_still_gets_its_answer(graph, monkeypatch):
    executor, node, spin_until = graph
    _server(executor, 'here')
    client = node.create_client(Trigger, '/legion/probe')
    assert spin_until(lambda: services.servers(node, client.srv_name)[0], 10.0)
    assert services.servers(node, client.srv_name)[0] == ['/legion/server']
    # rmw_fastrtps#792: the client's ready check fails for good although the server is there.
    monkeypatch.setattr(client, 'wait_for_service', lambda timeout_sec=None: False)
    answer = services.call(node, client, Trigger.Request(), spin_until, ready_s=0.1, answer_s=10.0)
    assert answer.success and answer.message == 'here'


def test_a_missing_service_fails_with_what_was_seen(graph):
    _executor, node, spin_until = graph
    client = node.create_client(Trigger, '/legion/nobody')
    started = time.monotonic()
    with pytest.raises(services.ServiceError, match=r'no server of /legion/nobody after 0\.5 s'):
        services.call(node, client, Trigger.Request(), spin_until, ready_s=0.5, answer_s=10.0)
    assert time.monotonic() - started < 5.0


def test_an_answer_that_does_not_come_in_time_is_withdrawn(graph):
    executor, node, spin_until = graph
    _server(executor, 'late')
    client = node.create_client(Trigger, '/legion/probe')
    assert client.wait_for_service(timeout_sec=10.0)

    def spin_without_the_server(predicate, timeout_s):  # the request waits, unanswered
        time.sleep(timeout_s)
        return predicate()

    with pytest.raises(services.ServiceError, match=r'did not answer within 0.2 s \(client ready: True'):
        services.call(node, client, Trigger.Request(), spin_without_the_server, ready_s=10.0, answer_s=0.2)
    assert client._pending_requests == {}  # withdrawn: the answer coming now is dropped
    spin_until(lambda: False, 0.5)
