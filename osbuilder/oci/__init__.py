"""OCI images: references, registry client, content store, layers."""
