"""``task_inference`` node: which skill cluster the robot is in, from what it sees and is told.

LEGION's VAE encoder maps (observation, task embedding) to a latent z; the Dirichlet-process mixture
over z assigns it to a cluster (legion-original.md §2). This node publishes both for every observation,
so an operator (or a supervisor) can see that the latent of the running step stays in its task's
cluster. It is not on the command path: the policy node computes its own z inside the actor.

Topics (absolute names, remappable):

* sub ``/legion/observation`` (Float32MultiArray, 12, sensor QoS) or ``/legion/observation_full``
  (39, for policies trained on Meta-World's full layout: the loaded policy's layout decides),
  ``/legion/active_embedding`` (Float32MultiArray, latched, from ``instruction``), ``/legion/checkpoint``
  (String, latched).
* pub ``/legion/latent`` (Float32MultiArray, label carries the observation's source stamp) and
  ``/legion/cluster`` (std_msgs/Int32; -1 when the artefact has no fitted mixture).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, Int32, String

from legion_kuka.acting import default_checkpoint, layout_size
from legion_ros import qos
from legion_ros.interfaces import ACTIVE_EMBEDDING, CHECKPOINT, CLUSTER, LATENT, OBSERVATIONS
from legion_ros.node_base import NodeConfigError, Param, StatusPublisher, declare_parameters, run_node
from legion_ros.provenance import BadMessageError, array_message, read_array, source_of

PARAMETERS = {
    'checkpoint': Param('', 'LEGION policy artefact (file or run directory); empty: the shipped default'),
    'max_rate_hz': Param(20.0, 'most latents per second (observations in between are skipped)',
                         range=(0.1, 1000.0)),
    'embedding_size': Param(384, 'length of a task embedding (all-MiniLM-L6-v2: 384)', range=(1, 4096)),
    'follow_trainer': Param(True, f'load every checkpoint announced on {CHECKPOINT.name}'),
    'device': Param('cpu', 'torch device of the VAE encoder'),
}


class TaskInferenceNode(Node):
    def __init__(self) -> None:
        super().__init__('task_inference')
        self.params = declare_parameters(self, PARAMETERS)
        self.status = StatusPublisher(self)
        self.policy = None
        self.embedding: np.ndarray | None = None
        self._last = 0.0
        self.latent_pub = self.create_publisher(Float32MultiArray, LATENT.name, qos.STATE)
        self.cluster_pub = self.create_publisher(Int32, CLUSTER.name, qos.STATE)
        # Both layouts: the loaded policy decides which one it encodes (12 or Meta-World's 39).
        for size, topic in OBSERVATIONS.items():
            self.create_subscription(Float32MultiArray, topic.name,
                                     lambda m, size=size: self.on_observation(m, size), qos.SENSOR)
        self.create_subscription(Float32MultiArray, ACTIVE_EMBEDDING.name, self.on_embedding, qos.LATCHED)
        if self.params.follow_trainer:
            self.create_subscription(String, CHECKPOINT.name, self.on_checkpoint, qos.LATCHED)
        path = self.params.checkpoint or default_checkpoint()
        if path:
            if not Path(path).exists():
                raise NodeConfigError(f'checkpoint {path} does not exist')
            self.load(path)
        else:
            self.status.publish('waiting', reason=f'no checkpoint yet (parameter checkpoint or '
                                f'{CHECKPOINT.name})')

    def load(self, path: str) -> None:
        from legion_core.policy import load_policy  # torch: at load, not at import

        try:
            self.policy = load_policy(path, device=self.params.device)
        except Exception as error:  # keep the previous artefact on a bad file
            self.status.publish('fault', reason=f'cannot load {path}: {type(error).__name__}: {error}')
            self.get_logger().error(f'cannot load {path}: {error}')
            return
        self.status.publish('ready', checkpoint=path)

    def on_checkpoint(self, message: String) -> None:
        if message.data.strip():
            self.load(message.data.strip())

    def on_embedding(self, message: Float32MultiArray) -> None:
        try:
            self.embedding = read_array(message, self.params.embedding_size, 'active embedding')
        except BadMessageError as error:
            self.embedding = None  # do not keep inferring with the previous step's embedding
            self.status.publish('input_rejected', topic=ACTIVE_EMBEDDING.name, reason=str(error))

    def observation_size(self) -> int | None:
        """The observation length the loaded policy encodes (None before one is loaded)."""
        return None if self.policy is None else layout_size(self.policy)

    def on_observation(self, message: Float32MultiArray, size: int) -> None:
        try:  # validated before the rate limit: every malformed message is reported
            obs = read_array(message, size, f'observation ({size})')
        except BadMessageError as error:
            self.status.publish('input_rejected', topic=OBSERVATIONS[size].name, reason=str(error))
            return
        now = time.monotonic()
        if size != self.observation_size() or self.embedding is None \
                or now - self._last < 1.0 / self.params.max_rate_hz:
            return
        self._last = now
        z, cluster = self.policy.latent(obs[None, :].astype(np.float32),
                                        self.embedding[None, :].astype(np.float32))
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(z)):
            self.status.publish('fault', reason='the encoder produced a non-finite latent')
            return
        self.latent_pub.publish(array_message(z, 'latent', source_of(message)))
        cluster = np.asarray(cluster if cluster is not None else [-1]).reshape(-1)
        self.cluster_pub.publish(Int32(data=int(cluster[0]) if cluster.size else -1))


def main(args=None) -> int:
    return run_node(TaskInferenceNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
