"""Assembly: image layers to one root tree, OCI runtime bundles per container, `files`."""
