"""Segmentation backends behind one interface, prompts, instances and per-stream tracking."""
