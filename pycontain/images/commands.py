"""Image commands: import, images, pull, push, rmi, tag, history, save, load, login, logout, image.

cli.py loads this module only when one of these commands runs (see cli.PLUGINS), so `pycontain run`
never imports it. COMMANDS has the same shape as cli.COMMANDS; HANDLERS maps a name to its function.
Progress and status lines go to stderr; stdout carries only what a script wants (ids, names, tables).
"""

from __future__ import annotations

import os
import sys

from pycontain.cli import FLAG, MULTI, VALUE, need
from pycontain.clifmt import ago, size
from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

QUIET = (("-q", "--quiet"), "quiet", FLAG, "", "no progress output")
INSECURE = (("--insecure-registry",), "insecure", MULTI, "HOST[:PORT]",
            "allow plain HTTP / unverified TLS for this registry (loopback always is)")
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "import": ([(("-c", "--change"), "change", MULTI, "INSTR", "set CMD, ENTRYPOINT, ENV, WORKDIR or USER")],
               "TARBALL NAME[:TAG]", "make a one-layer image from a root filesystem tarball"),
    "images": ([(("-q", "--quiet"), "quiet", FLAG, "", "only ids"),
                (("-a", "--all"), "all", FLAG, "", "accepted for Docker compatibility (no intermediate images)"),
                (("--digests",), "digests", FLAG, "", "show repository digests"),
                (("--no-trunc",), "no_trunc", FLAG, "", "full image ids"),
                (("-f", "--filter"), "filter", MULTI, "KEY=VALUE", "dangling=true|false, reference=PATTERN, "
                 "label=K[=V], before=IMAGE, since=IMAGE"),
                (("--format",), "format", VALUE, "TEMPLATE", "a Go template (as Docker's), `table ...`, or json")],
               "[REPOSITORY[:TAG]]", "list images"),
    "pull": ([QUIET, (("--platform",), "platform", VALUE, "OS/ARCH[/VARIANT]", "from a multi-platform image, "
                      "take this one (default: this host's, linux/amd64 here)"),
              (("--registry-mirror",), "mirror", MULTI, "URL", "try this Docker Hub mirror first"), INSECURE],
             "NAME[:TAG|@DIGEST]", "download an image from a registry"),
    "push": ([QUIET, INSECURE], "NAME[:TAG]", "upload an image to a registry"),
    "rmi": ([(("-f", "--force"), "force", FLAG, "", "remove even if a stopped container uses it, or several tags")],
            "IMAGE...", "remove images"),
    "tag": ([], "SOURCE TARGET", "give an image another name"),
    "history": ([(("-q", "--quiet"), "quiet", FLAG, "", "only ids"),
                 (("--no-trunc",), "no_trunc", FLAG, "", "do not shorten the commands"),
                 (("--format",), "format", VALUE, "TEMPLATE", "a Go template (as Docker's), `table ...`, or json")],
                "IMAGE",
                "show how an image's layers were made"),
    "save": ([(("-o", "--output"), "output", VALUE, "FILE", "write to FILE instead of stdout")], "IMAGE...",
             "write images to a docker-archive tar"),
    "load": ([(("-i", "--input"), "input", VALUE, "FILE", "read FILE instead of stdin"), QUIET], "",
             "load images from a docker-archive tar (docker save, skopeo)"),
    "login": ([(("-u", "--username"), "username", VALUE, "USER", "user name"),
               (("-p", "--password"), "password", VALUE, "PASSWORD", "password (prefer --password-stdin)"),
               (("--password-stdin",), "password_stdin", FLAG, "", "read the password from stdin"), INSECURE],
              "[REGISTRY]", "store credentials for a registry (root-only file)"),
    "logout": ([], "[REGISTRY]", "forget the credentials for a registry"),
    "image": ([(("-a", "--all"), "all", FLAG, "", "prune: every image no container uses, not only untagged"),
               (("-f", "--force"), "force", FLAG, "", "prune: do not ask; rm: as rmi -f"),
               (("-q", "--quiet"), "quiet", FLAG, "", "ls: only ids"),
               (("--filter",), "filter", MULTI, "KEY=VALUE", "ls: as `images --filter`"),
               (("--format",), "format", VALUE, "TEMPLATE", "ls: as `images --format`")],
              "prune|ls|rm [ARG...]", "manage images (prune, ls, rm)"),
}


def _event(paths: Any, action: str, actor: str, name: str) -> None:
    """An image event for `events` (Docker's: the actor is the image id or reference, `name` its name)."""
    from pycontain import events

    events.emit(paths, "image", action, actor, {"name": name})


def _settings(opts: dict[str, Any]) -> Any:
    from pycontain.images.registry import Settings

    return Settings(mirrors=opts.get("mirror") or (), insecure=opts.get("insecure") or ())


def cmd_import(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.store import Store

    need(pos, "TARBALL NAME[:TAG]", exactly=2)
    image_id = Store(paths).import_tarball(pos[0], pos[1], opts["change"])
    _event(paths, "import", image_id, pos[1])
    print(image_id)
    return 0


# Docker's placeholders -> headers, and default tables, of `images` and `history`.
IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
                 "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}
IMAGES_TABLE = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
IMAGES_DIGESTS_TABLE = "table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
IMAGE_FILTERS = ("dangling", "reference", "label", "before", "since")
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}
HISTORY_TABLE = "table {{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}"


def cmd_images(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    import time

    from pycontain.clifmt import created_at, listing, parse_filters
    from pycontain.images import reference
    from pycontain.images.store import Store

    filters = parse_filters(opts["filter"], IMAGE_FILTERS, "images")
    for value in filters.get("dangling", ()):
        if value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"invalid filter 'dangling={value}': expected true or false")
    if opts["format"] is not None:
        from pycontain import gotemplate

        gotemplate.parse(gotemplate.docker_format(opts["format"]))  # a bad template fails before any work
    store = Store(paths)
    want = reference.parse(pos[0]) if pos else None
    for problem in store.problems():  # named on stderr; the listing goes on (`gc` repairs the tags)
        print(f"pycontain: {problem}", file=sys.stderr)
    images = store.images()
    if filters:
        images = _filter_images(store, images, filters)
    now = time.time()
    rows, seen = [], set()
    for repo, tag, config, nbytes in images:
        if want is not None and (repo != want.familiar_repository or (":" in pos[0] and tag != want.tag)):
            continue
        image_id = config["id"] if opts["no_trunc"] else config["id"].split(":", 1)[1][:12]
        if opts["quiet"] and opts["format"] is None:
            if image_id in seen:
                continue  # one id per image, however many tags it has
            seen.add(image_id)
        digests = [d for d in store.meta(config["id"]).get("repo_digests", [])
                   if reference.parse(d).familiar_repository == repo]
        rows.append({
            "Containers": "N/A", "CreatedAt": created_at(config.get("created")),
            "CreatedSince": ago(config.get("created", ""), now) + " ago",
            "Digest": digests[0].split("@", 1)[1] if digests else "<none>", "ID": image_id, "Repository": repo,
            "SharedSize": "N/A", "Size": size(nbytes), "Tag": tag, "UniqueSize": "N/A", "VirtualSize": size(nbytes),
        })
    listing(opts["format"], rows, IMAGE_HEADERS, IMAGES_DIGESTS_TABLE if opts["digests"] else IMAGES_TABLE,
            opts["quiet"])
    return 0


def _filter_images(store: Any, images: list[Any], filters: dict[str, list[str]]) -> list[Any]:
    """Docker's `images --filter`: the values of one key are ORed, different keys ANDed."""
    from fnmatch import fnmatchcase

    def glob(pattern: str, name: str) -> bool:
        # Go's path.Match: `*` and `?` never cross a `/`
        parts, names = pattern.split("/"), name.split("/")
        return len(parts) == len(names) and all(fnmatchcase(n, p) for p, n in zip(parts, names))

    def created(ref: str) -> str:
        return str(store.resolve(ref).config.get("created") or "")

    before = [created(v) for v in filters.get("before", ())]
    since = [created(v) for v in filters.get("since", ())]
    out = []
    for repo, tag, config, nbytes in images:
        labels = (config.get("config") or {}).get("Labels") or {}
        stamp = str(config.get("created") or "")
        checks = {
            "dangling": [(repo == "<none>" and tag == "<none>") == (v.lower() in ("true", "1"))
                         for v in filters.get("dangling", ())],
            "reference": [repo != "<none>" and (glob(v, f"{repo}:{tag}") or glob(v, repo))
                          for v in filters.get("reference", ())],
            "label": [k in labels and (not eq or labels[k] == val)
                      for k, eq, val in (v.partition("=") for v in filters.get("label", ()))],
        }
        if not all(any(results) for key, results in checks.items() if key in filters):
            continue
        if any(stamp >= b for b in before) or any(stamp <= s for s in since):
            continue
        out.append((repo, tag, config, nbytes))
    return out


def cmd_pull(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.progress import Progress
    from pycontain.images.pull import Puller

    need(pos, "an image name", exactly=1)
    puller = Puller(paths, _settings(opts), Progress(quiet=opts["quiet"]), platform=opts["platform"])
    image_id, ref = puller.pull(pos[0])
    _event(paths, "pull", image_id, ref.familiar)
    print(str(ref))
    return 0


def cmd_push(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.progress import Progress
    from pycontain.images.push import push

    need(pos, "an image name", exactly=1)
    digest = push(paths, pos[0], _settings(opts), Progress(quiet=opts["quiet"]))
    _event(paths, "push", pos[0], pos[0])
    print(digest)
    return 0


def cmd_rmi(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.errors import PycontainError
    from pycontain.images.remove import rmi

    need(pos, "an image")
    code = 0
    for name in pos:
        try:
            for line in rmi(paths, [name], opts["force"]):
                print(line)
        except PycontainError as e:
            print(f"pycontain: {e}", file=sys.stderr)
            code = e.exit_code
    return code


def cmd_tag(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images import reference
    from pycontain.images.store import Store

    need(pos, "SOURCE TARGET", exactly=2)
    store = Store(paths)
    image = store.resolve(pos[0])
    target = reference.parse(pos[1])
    if target.digest:
        raise UsageError(f"cannot tag with a digest ({pos[1]}): a digest names content, use a tag")
    store.write_meta(image.id)  # make sure the image is known even if it was only digest-referenced
    store.tag(target, image.id)
    _event(paths, "tag", image.id, target.familiar)
    return 0


def cmd_history(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    import time

    from pycontain.clifmt import created_at, listing
    from pycontain.images.store import Store

    need(pos, "an image", exactly=1)
    if opts["format"] is not None:
        from pycontain import gotemplate

        gotemplate.parse(gotemplate.docker_format(opts["format"]))
    store = Store(paths)
    image = store.resolve(pos[0])
    diff_ids = list(image.config.get("rootfs", {}).get("diff_ids", []))
    rows = []
    history = image.config.get("history") or [{} for _ in diff_ids]
    layer_index = len(diff_ids) - 1
    now = time.time()
    for i, entry in enumerate(reversed(history)):
        empty = bool(entry.get("empty_layer"))
        nbytes = 0
        if not empty and layer_index >= 0:
            nbytes = store.layer_info(diff_ids[layer_index]).get("size", 0)
            layer_index -= 1
        created_by = str(entry.get("created_by", "")).replace("\t", " ")
        if not opts["no_trunc"] and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        stamp = entry.get("created")
        rows.append({
            "Comment": str(entry.get("comment", "")), "CreatedAt": created_at(stamp),
            "CreatedBy": created_by, "CreatedSince": (ago(stamp, now) + " ago") if stamp else "",
            "ID": (image.id if opts["no_trunc"] else image.short_id) if i == 0 else "<missing>",
            "Size": size(int(nbytes)),
        })
    listing(opts["format"], rows, HISTORY_HEADERS, HISTORY_TABLE, opts["quiet"])
    return 0


def cmd_save(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.archive import save

    need(pos, "an image")
    if opts["output"]:
        save(paths, pos, opts["output"])
        return 0
    if os.isatty(1):
        raise UsageError("refusing to write a tar archive to a terminal: use -o FILE or redirect stdout")
    save(paths, pos, None)
    return 0


def cmd_load(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.archive import load

    if pos:
        raise UsageError("load takes no arguments: use -i FILE (or stdin)")
    if not opts["input"] and os.isatty(0):
        raise UsageError("nothing to load: use -i FILE or pipe an archive into stdin")
    for line in load(paths, opts["input"]):
        _event(paths, "load", line, line)
        print(f"Loaded image ID: {line}" if line.startswith("sha256:") else f"Loaded image: {line}")
    return 0


def cmd_login(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images import auth
    from pycontain.images.registry import Registry

    if len(pos) > 1:
        raise UsageError("usage: pycontain login [OPTIONS] [REGISTRY]")
    domain = _registry_domain(pos[0] if pos else "docker.io")
    user = opts["username"]
    password = opts["password"]
    if opts["password_stdin"]:
        if password is not None:
            raise UsageError("use either --password or --password-stdin, not both")
        password = sys.stdin.readline().rstrip("\r\n")
    if not user:
        if not os.isatty(0):
            raise UsageError("a user name is needed: pycontain login -u USER --password-stdin REGISTRY")
        user = input("Username: ").strip()
    if password is None:
        if not os.isatty(0):
            raise UsageError("a password is needed: pass it on stdin with --password-stdin")
        import getpass

        password = getpass.getpass("Password: ")
    if not user or not password:
        raise UsageError("user name and password must not be empty")
    probe = Registry(paths, domain, "", _settings(opts))
    probe.credentials = (user, password)  # try these, not the stored ones
    probe.ping()
    auth.store_credentials(paths, domain, user, password)
    print(f"Login Succeeded ({domain}; credentials in {auth.auth_file(paths)}, readable by root only)",
          file=sys.stderr)
    return 0


def cmd_logout(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images import auth

    if len(pos) > 1:
        raise UsageError("usage: pycontain logout [REGISTRY]")
    domain = _registry_domain(pos[0] if pos else "docker.io")
    auth.store_credentials(paths, domain, "", None)
    print(f"Removing login credentials for {domain}", file=sys.stderr)
    return 0


def _registry_domain(text: str) -> str:
    from pycontain.images import reference

    host = text.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    if not host or not reference.is_domain(host):
        raise UsageError(f"invalid registry {text!r}: expected HOST[:PORT]")
    return host


def cmd_image(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.images.remove import prune

    if not pos:
        raise UsageError("usage: pycontain image prune [-a] | ls [-q] | rm [-f] IMAGE...")
    sub, rest = pos[0], pos[1:]
    if sub == "prune":
        if rest:
            raise UsageError("image prune takes no arguments")
        if not opts["force"]:
            from pycontain.clifmt import confirm

            what = ("all images without at least one container associated to them" if opts["all"]
                    else "all dangling images")
            if not confirm(f"WARNING! This will remove {what}.", f"image prune removes {what}"):
                return 0
        lines = prune(paths, opts["all"])
        for line in lines:
            print(line)
        if not lines:
            print("Nothing to remove", file=sys.stderr)
        return 0
    if sub in ("ls", "list"):
        return cmd_images(paths, {"quiet": opts["quiet"], "all": opts["all"], "digests": False,
                                  "no_trunc": False, "filter": opts["filter"], "format": opts["format"]}, rest)
    if sub in ("rm", "remove"):
        return cmd_rmi(paths, {"force": opts["force"]}, rest)
    raise UsageError(f"unknown image subcommand {sub!r}: use prune, ls or rm")


HANDLERS = {"import": cmd_import, "images": cmd_images, "pull": cmd_pull, "push": cmd_push, "rmi": cmd_rmi,
            "tag": cmd_tag, "history": cmd_history, "save": cmd_save, "load": cmd_load, "login": cmd_login,
            "logout": cmd_logout, "image": cmd_image}
