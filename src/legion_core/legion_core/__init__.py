"""LEGION lifelong reinforcement learning core (plain Python: never imports rclpy)."""

__version__ = '0.1.0'
