"""Pieces every model shares: devices, images, checkpoints, jobs, quality measures."""
