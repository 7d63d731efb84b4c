"""Offline processing: the perception pipeline over folders and recorded bags, no ROS needed."""
