"""Exec helper: runs one container command inside its pod's network namespace with its volumes.

Started by the node agent as `python sandbox.py SPEC.json` (standard library only, nothing else
imported, so it starts in tens of milliseconds). It joins the pod's network namespace, makes a
private mount namespace, builds a root on a tmpfs that mirrors the host's `/` by bind mounts,
adds the volumes at their mount paths, chroots into it and execs the command.

Why a mirrored root: a mount path that does not exist on the host (`/data`,
`/var/run/secrets/kubernetes.io/serviceaccount`) needs a directory to mount on. Creating it on
the host would leave junk behind; instead the parent directory inside the mirror is replaced by
a tmpfs holding bind mounts of the parent's entries plus the new directory. Everything lives in
the private mount namespace and vanishes with the container's processes.
"""

import contextlib
import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    _check(rc, f"mount {source} on {target}")


class RootBuilder:
    """A host-mirroring root under `root`, extended in place by `mount_at`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.owned: set[str] = set()  # virtual dirs that live on one of our tmpfs
        self.sources: dict[str, str] = {"/": "/"}  # virtual mount point -> host source

    def _host_of(self, vpath: str) -> tuple[str, str]:
        """(mount point, host path) backing the virtual path, from the longest mounted prefix."""
        best = max((p for p in self.sources if vpath == p or vpath.startswith(p.rstrip("/") + "/")), key=len)
        return best, os.path.join(self.sources[best], os.path.relpath(vpath, best)) if vpath != best else self.sources[
            best
        ]

    def _real(self, vpath: str) -> str:
        return self.root + vpath if vpath != "/" else self.root

    def mirror(self, vdir: str) -> None:
        """Put a tmpfs on the virtual dir and bind every entry of its host counterpart into it."""
        _, host = self._host_of(vdir)
        real = self._real(vdir)
        _mount("tmpfs", real, "tmpfs", 0, "mode=755")
        self.owned.add(vdir)
        for entry in os.scandir(host):
            src, dst = entry.path, os.path.join(real, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(dst)
                _mount(src, dst, None, MS_BIND | MS_REC)
            else:
                open(dst, "w").close()
                _mount(src, dst, None, MS_BIND)

    def resolve(self, vpath: str, depth: int = 0) -> str:
        """Resolve symlinks of the existing prefix of an absolute virtual path."""
        parts = [p for p in vpath.split("/") if p]
        cur = "/"
        for i, part in enumerate(parts):
            nxt = os.path.join(cur, part)
            real = self._real(nxt)
            if os.path.islink(real) and depth < 40:
                link = os.readlink(real)
                target = link if link.startswith("/") else os.path.normpath(os.path.join(cur, link))
                rest = "/".join(parts[i + 1 :])
                return self.resolve(os.path.join(target, rest) if rest else target, depth + 1)
            cur = nxt
        return cur

    def ensure(self, vpath: str, is_dir: bool) -> str:
        """Make the virtual path exist (as a dir or an empty file); returns its real path."""
        vpath = self.resolve(vpath)
        real = self._real(vpath)
        if os.path.lexists(real):
            return real
        parent = os.path.dirname(vpath)
        self.ensure(parent, True)
        parent = self.resolve(parent)
        point, _ = self._host_of(parent)
        if parent not in self.owned and point == "/":
            self.mirror(parent)  # a host directory: shadow it instead of writing to the host
        if is_dir:
            os.mkdir(real)
            if parent in self.owned:
                self.owned.add(vpath)
        else:
            open(real, "w").close()
        return real

    def mount_at(self, source: str, target: str, read_only: bool) -> None:
        """Bind `source` at the virtual path `target`."""
        real = self.ensure(target, os.path.isdir(source))
        _mount(source, real, None, MS_BIND | MS_REC)
        if read_only:
            _mount("none", real, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        self.sources[self.resolve(target)] = source


def enter(spec: dict[str, Any]) -> None:
    """Join the network namespace, build the root, chroot and chdir (without exec)."""
    with open(spec["netns"]) as ns:
        _check(_libc.setns(ns.fileno(), CLONE_NEWNET), "setns")
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    builder = RootBuilder(spec["root"])
    builder.mirror("/")
    for m in sorted(spec["mounts"], key=lambda m: m["target"].count("/")):
        builder.mount_at(m["source"], m["target"], m.get("readOnly", False))
    workdir = spec.get("workingDir") or "/"
    builder.ensure(workdir, True)
    os.chroot(spec["root"])
    os.chdir(workdir)


def _message_path(spec: dict[str, Any], entered: bool) -> str:
    """Where the termination message goes: inside the sandbox once entered, else its host-side file.

    Before the chroot the container's path (say /dev/termination-log) would be the host's own file.
    """
    target = spec.get("terminationMessagePath") or "/dev/termination-log"
    if entered:
        return str(target)
    sources = [m["source"] for m in spec["mounts"] if m["target"] == target]
    return str(sources[0]) if sources else os.devnull


def main() -> None:
    """Enter the sandbox described by the JSON file in argv[1] and exec its command."""
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    entered = False
    try:
        enter(spec)
        entered = True
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as err:
        message = f"cannot start {spec['argv'][0]!r}: {err}"
        print(message, file=sys.stderr, flush=True)
        with contextlib.suppress(OSError), open(_message_path(spec, entered), "w") as f:
            f.write(message)
        sys.exit(127 if isinstance(err, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
