"""ROS 2 nodes: the only part of samfusion that imports rclpy and the generated interfaces."""
