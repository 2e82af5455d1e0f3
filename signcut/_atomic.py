"""Files: every output of signcut is written here, every input file opened here.

Outputs are written atomically (a temporary file in the same folder, then ``os.replace``),
keep the mode of the file they replace, write through symbolic links to their target, and
never replace what is not a regular file (a device such as ``/dev/null``, a FIFO, a socket).
Inputs are opened without blocking and refused unless they are regular files, so a FIFO or
a device given as input cannot hang or feed a reader forever.
"""
import errno
import os
import secrets
import stat


class PathError(ValueError):
    """A path that signcut refuses to read or write (one-line message)."""


def _kind(mode):
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path):
    """Open ``path`` for binary reading if it is a regular file (following links).

    Raises ``FileNotFoundError`` when it does not exist, ``IsADirectoryError`` for a folder
    and ``OSError`` (EINVAL) for a FIFO, device or socket: it is opened without blocking, so
    a FIFO with no writer does not hang the caller.
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file", path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"it is {_kind(mode)}, not a regular file", path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _target(path):
    """Where writing ``path`` lands: the end of its symbolic links, if any."""
    return os.path.realpath(path) if os.path.islink(path) else path


def check_output(path, inputs=(), *, folder=False):
    """Raise :class:`PathError` unless ``path`` can be written (created or replaced) without
    touching anything of ``inputs``.

    ``path`` must not be empty, must not be (or lie inside, or contain) any input (compared
    after resolving links, and by inode), must be a regular file or not exist (a folder when
    ``folder=True``), and its folder must exist and be writable.
    """
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise PathError("the output path is empty")
    full = os.path.realpath(path)
    for source in inputs:
        if source is None:
            continue
        source = os.fspath(source)
        src = os.path.realpath(source)
        same = full == src or (os.path.exists(path) and os.path.exists(source)
                               and os.path.samefile(path, source))
        if same or full.startswith(src + os.sep) or src.startswith(full + os.sep):
            what = "is" if same else ("is inside" if full.startswith(src + os.sep)
                                      else "would contain")
            raise PathError(f"the output {path!r} {what} the input {source!r}: refusing to "
                            f"write it")
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError:                 # a dangling link: writing creates its target
            mode = stat.S_IFREG
        if folder and not stat.S_ISDIR(mode):
            raise PathError(f"cannot use {path!r} as a folder: it is {_kind(mode)}")
        if not folder and not stat.S_ISREG(mode):
            raise PathError(f"cannot write {path!r}: it is {_kind(mode)}; signcut only "
                            f"replaces regular files")
    parent = os.path.dirname(os.path.abspath(_target(path)))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise PathError(f"cannot write {path!r}: {parent!r} is not a folder")
    if not os.path.isdir(parent):
        raise PathError(f"cannot write {path!r}: folder {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PathError(f"cannot write {path!r}: folder {parent!r} is not writable")


def atomic_write(path, write):
    """Call ``write(tmp)`` on a fresh, empty temporary file in the folder of ``path`` (open it
    with mode ``"wb"``), then move it onto ``path`` with ``os.replace``. On any error the
    temporary file is removed and ``path`` is left as it was. The temporary name keeps the
    extension (for writers that look at it).

    A symbolic link is written through (its target is replaced, the link stays); an existing
    file keeps its permission bits (the temporary file is private until then) and, where
    allowed, its owner; anything that is not a regular file (a device, a FIFO, a socket, a
    folder) is refused with ``OSError`` and left alone.
    """
    path = _target(os.fspath(path))
    old = None
    if os.path.lexists(path):
        old = os.stat(path)
        if not stat.S_ISREG(old.st_mode):
            err = errno.EISDIR if stat.S_ISDIR(old.st_mode) else errno.EINVAL
            raise OSError(err, f"it is {_kind(old.st_mode)}; signcut only replaces regular "
                               f"files", path)
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp{ext}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o600 if old is not None else 0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {path!r}: cannot create a file in folder "
                                   f"{folder!r} ({exc.strerror})", folder) from exc
    os.close(fd)
    try:
        write(tmp)
        if old is not None:
            if (old.st_uid, old.st_gid) != _owner(tmp):
                try:
                    os.chown(tmp, old.st_uid, old.st_gid)
                except OSError:             # only root may give a file away
                    pass
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _owner(path):
    st = os.stat(path)
    return st.st_uid, st.st_gid
