"""Thin rclpy nodes over legion_core and legion_kuka, and the pip-only graph runner."""
