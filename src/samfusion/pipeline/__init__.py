"""The per-frame perception pipeline shared by the ROS node and the offline command."""
