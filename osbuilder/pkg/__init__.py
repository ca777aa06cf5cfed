"""Building package and kernel images without a container daemon."""
