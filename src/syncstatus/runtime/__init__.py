"""The running process: its loops under one guard, metrics, health and logs."""
