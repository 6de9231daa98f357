"""The rclpy nodes of LEGION-ROS, one module each with ``main(args=None)`` (console scripts).

instruction, task_inference, policy, real2sim, sim2real, trainer: the learning chain.
sim_bridge: the MuJoCo twin behind the real driver's interface. recorder: rosbag2 (MCAP) of a run.
"""
