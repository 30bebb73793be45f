"""Lets the host find the robot description as package data (`polyniod_hardware`)."""
