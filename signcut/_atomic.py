"""Atomic writes: every output of signcut goes through here."""
import os
import secrets


def atomic_write(path, write):
    """Call ``write(tmp)`` on a fresh temporary path in the folder of ``path``, then move it
    onto ``path`` with ``os.replace``. On any error the temporary file is removed and ``path``
    is left as it was. The temporary name keeps the extension (for writers that look at it).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp{ext}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
