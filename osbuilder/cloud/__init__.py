"""Uploading built images to clouds (OpenStack first)."""
