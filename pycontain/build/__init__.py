"""`pycontain build`: Dockerfiles into images, through the same executor and layer store as `run`.

    dockerfile.py   the parsed instructions (the `dockerfile` package: the reference parser itself)
    words.py        word expansion and splitting ($VAR, ${VAR:-x} ...), as the reference front end does it
    context.py      the build context: .dockerignore, confinement, source globs, checksums, COPY/ADD
    builder.py      the steps, the cache, the progress lines
    commands.py     the `build` and `builder` commands
"""
