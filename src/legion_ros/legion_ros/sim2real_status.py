"""What the ``sim2real`` node's ``~/status`` says, from its lifecycle state and its commander (pure
Python, no ROS: tested without it).

``state`` is the commander's (``holding``, ``commanding``, ``transit``, ``estop``) while the node is
active; in any other lifecycle state it is that state (``unconfigured``, ``inactive``, ``finalized``),
except that a latched e-stop always reads ``estop`` (the instruction node ends a running instruction on
it, whatever the node's state). Every message also carries ``lifecycle``, the input rejections per topic,
the ``~/reset_estop`` requests served, the commander's counters, and after a failed configuration its
``reason`` until a configuration succeeds.
"""
from __future__ import annotations

from typing import Any


class Sim2RealStatus:
    """The node's status fields and the counters behind them."""

    def __init__(self) -> None:
        self.rejected: dict[str, int] = {}  # messages dropped as malformed, per topic
        self.estop_resets = 0  # ~/reset_estop requests served (an operator's)

    def reject(self, topic: str) -> dict[str, int]:
        self.rejected[topic] = self.rejected.get(topic, 0) + 1
        return dict(self.rejected)

    @staticmethod
    def state(lifecycle: str, commander: Any | None) -> str:
        if commander is None:
            return lifecycle
        arm = commander.state.value
        return arm if lifecycle == 'active' or arm == 'estop' else lifecycle

    def fields(self, lifecycle: str, commander: Any | None, reason: str | None = None) -> dict[str, Any]:
        """``state`` and the rest of a status message (see module); ``reason``: why configuring failed."""
        fields = {'state': self.state(lifecycle, commander), 'lifecycle': lifecycle,
                  'rejected': dict(self.rejected), 'estop_resets': self.estop_resets}
        if commander is not None:
            fields.update(commander.report())
        if reason is not None:
            fields['reason'] = reason
        return fields
