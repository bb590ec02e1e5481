"""Images: references, the content-addressed store, and safe layer unpacking."""
