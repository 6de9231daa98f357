"""Test support for ROS graphs: isolated domains, process helpers."""
