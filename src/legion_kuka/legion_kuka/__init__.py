"""The KUKA LBR iiwa 7 R800 embodiment of LEGION (plain Python: never imports rclpy)."""
