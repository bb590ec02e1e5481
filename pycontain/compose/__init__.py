"""`pycontain compose`: multi-container applications from a Compose file.

    model.py    the files found and merged, interpolation, validation (file, key path and line in every
                error), the canonical long forms `compose config` prints, and the start order
"""
