"""Launch mixins and paths of LEGION-ROS's launch files, parameters and robot description."""
