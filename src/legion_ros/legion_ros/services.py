"""Calling one of the graph's services from a CLI or a probe.

A service client can stay "not ready" for good while its server answers: rmw_fastrtps's ready check
also needs the client's own matched counts, which one client of a node sometimes never gets while its
siblings on the same node do (ros2/rmw_fastrtps#792, open for Jazzy; seen in our CI on 2026-12-06).
So :func:`call` asks DDS itself whether a server exists, by its request readers, and sends the request
anyway when one does. It fails only when no server is seen or no answer comes.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``spin_until(predicate, seconds)``: spin the caller's node until ``predicate()`` or the time is up;
#: whether ``predicate()`` held.
SpinUntil = Callable[[Callable[[], bool], float], bool]


class ServiceError(RuntimeError):
    """No server of the service, or no answer in time (the message says which, and what DDS saw)."""


def servers(node, service: str) -> tuple[list[str], list[str]]:
    """The nodes behind ``service`` as DDS sees them: those of its request readers and of its reply
    writers (what rmw_fastrtps counts to call a client ready). The graph's service list would not do:
    it lists a service that only has clients."""
    def names(endpoints) -> list[str]:
        return [f'{e.node_namespace.rstrip("/")}/{e.node_name}' for e in endpoints]

    return (names(node.get_subscriptions_info_by_topic(f'rq{service}Request', no_mangle=True)),
            names(node.get_publishers_info_by_topic(f'rr{service}Reply', no_mangle=True)))


def call(node, client, request, spin_until: SpinUntil, *, ready_s: float, answer_s: float) -> Any:
    """``client``'s answer to ``request``, ``client`` being one of ``node``'s.

    Waits up to ``ready_s`` for the client to be ready; a client still not ready while a server is
    seen sends the request anyway. ServiceError when no server is seen, or no answer within
    ``answer_s`` (the request is then withdrawn: a late answer is dropped).
    """
    ready = client.wait_for_service(timeout_sec=ready_s)
    readers, writers = servers(node, client.srv_name)
    if not ready and not readers:
        raise ServiceError(f'no server of {client.srv_name} after {ready_s:g} s')
    future = client.call_async(request)
    if not spin_until(future.done, answer_s):
        client.remove_pending_request(future)
        raise ServiceError(f'{client.srv_name} did not answer within {answer_s:g} s (client ready: {ready}; '
                           f'request readers {readers}, reply writers {writers})')
    return future.result()
