"""Cross-package integration tests. The legion_ros pytest plugin gives this run its own ROS domain."""
