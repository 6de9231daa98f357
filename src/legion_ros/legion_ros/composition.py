"""Several LEGION nodes in one process, handing messages to each other without a middleware hop.

rclpy has no intra-process communication (rclcpp's ``use_intra_process_comms``): two nodes in one
process still talk through DDS, and every hop costs an executor wake-up. On the decision path
(joint state -> real2sim -> policy -> sim2real -> command) that is three hops per control cycle,
several milliseconds on a loaded 2-core machine. :class:`IntraProcess` connects nodes that already
exist, unchanged:

* a topic that one hosted node publishes and another subscribes (same name and type) is handed over
  by a direct call, in the publishing callback, before the message goes out on DDS for everybody
  else (recorder, monitors, other processes). The hosted subscriber then ignores the DDS copy of a
  message it already got (equal messages, recent ones); messages from other processes on that topic
  (a test publishing a malformed action, say) still arrive through DDS as before.
* a topic that several hosted nodes subscribe from outside (the driver's joint states) is taken once
  and given to them in hosting order, so sim2real knows the cycle's joint state before the chain that
  real2sim starts on it reaches sim2real.

Each node keeps its name, parameters, services and status topic: a composed graph looks the same
from outside as one process per node. The nodes must be single-threaded (they are called from each
other's callbacks). The links are made once, from the subscriptions and publishers that exist then; each
node gets ``intra_process`` (this object), so that a managed node refuses a cleanup, which would destroy
them (``node_base.ManagedNode``).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription

RECENT = 32  # local deliveries remembered per topic to recognise their DDS copies


def _qos_key(subscription: Subscription) -> tuple:
    profile = subscription.qos_profile
    return profile.reliability, profile.durability, profile.history, profile.depth


class IntraProcess:
    """Direct hand-off between hosted nodes; call once after all of them are constructed."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes = list(nodes)
        for node in self.nodes:
            node.intra_process = self
        self.local_topics: dict[str, list[str]] = {}   # topic -> hosted subscribers (node names)
        self.shared_topics: dict[str, list[str]] = {}  # external topic -> hosted subscribers, in order
        subscriptions: dict[tuple[str, type], list[tuple[Node, Subscription]]] = {}
        for node in self.nodes:
            for subscription in list(node.subscriptions):
                key = (subscription.topic_name, subscription.msg_type)
                subscriptions.setdefault(key, []).append((node, subscription))
        published: set[tuple[str, type]] = set()
        for node in self.nodes:
            for publisher in list(node.publishers):
                key = (publisher.topic_name, publisher.msg_type)
                local = [(n, s) for n, s in subscriptions.get(key, []) if n is not node]
                if local and key not in published:
                    self._hand_over(node, publisher, local)
                    published.add(key)
        for key, subs in subscriptions.items():
            if key not in published and len(subs) > 1 and len({_qos_key(s) for _, s in subs}) == 1:
                self._share(key[0], subs)

    def _hand_over(self, owner: Node, publisher: Publisher, local: list[tuple[Node, Subscription]]) -> None:
        recent: deque = deque(maxlen=RECENT)
        callbacks = [subscription.callback for _, subscription in local]
        dds_publish = publisher.publish

        def publish(message) -> None:
            recent.append(message)
            for callback in callbacks:  # the hosted subscribers first: this is the critical path
                callback(message)
            dds_publish(message)

        def from_dds(callback: Callable) -> Callable:
            def receive(message) -> None:
                for index, mine in enumerate(recent):
                    if mine == message:  # our own message coming back through DDS: already handled
                        del recent[index]
                        return
                callback(message)
            return receive

        publisher.publish = publish
        for (_, subscription), callback in zip(local, callbacks, strict=True):
            subscription.callback = from_dds(callback)
        self.local_topics[publisher.topic_name] = [node.get_name() for node, _ in local]

    def _share(self, topic: str, subs: list[tuple[Node, Subscription]]) -> None:
        callbacks = [subscription.callback for _, subscription in subs]

        def receive(message) -> None:
            for callback in callbacks:
                callback(message)

        subs[0][1].callback = receive
        for node, subscription in subs[1:]:
            node.destroy_subscription(subscription)
        self.shared_topics[topic] = [node.get_name() for node, _ in subs]

    def describe(self) -> str:
        parts = [f'{topic} -> {", ".join(names)}' for topic, names in sorted(self.local_topics.items())]
        parts += [f'{topic} (shared) -> {", ".join(names)}'
                  for topic, names in sorted(self.shared_topics.items())]
        return '; '.join(parts) or 'no shared topics'
