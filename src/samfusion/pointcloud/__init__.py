"""Point-cloud processing: labeling LiDAR points from camera masks, per-instance cleanup."""
