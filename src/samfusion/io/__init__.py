"""Readers for recorded datasets (KITTI folders, image folders) used offline and by the player."""
