"""Output files: checked before any work, written atomically, their temporary files swept.

Every program that writes a file (--save, --plot, --html) calls check_outputs once, before it
loads data or builds a network, so a run never learns after an hour of training that it cannot
write its result: each path must be non-empty, not a folder, in a folder that exists and takes
a new file (a probe temporary file is created and removed there), short enough for its temporary
name, distinct from every other output and from every file the run reads.

atomic_write writes a file through a temporary file beside it, `.NAME.mlp-twins-PID-XXXXXXXX.tmp`
(PID: the writing process; X: random), renamed over NAME once complete. A write that fails
leaves NAME as it was and raises InputError, "could not write NAME: reason; NAME keeps its old
content" (or "was not created"). A process killed during a write leaves its temporary file
behind; the next write to the same NAME removes those left by processes that no longer run here
and untouched for STALE_SECONDS, and nothing else. No NumPy, no torch: the twins pass in a
function that writes the bytes.
"""

import os
import re
import tempfile
import time
from pathlib import Path

from common.errors import InputError

TAG = "mlp-twins"  # in every temporary name, so that a sweep can tell ours from anyone's
RANDOM_CHARS = 8  # tempfile.mkstemp's random part
STALE_SECONDS = 60

# ----------------------------------------------------------------------------- checking paths


def check_outputs(outputs, inputs=None):
    """Refuse, in one line naming the flags, any output the run could not write safely.

    outputs: {flag: path or None}, the files the run will write (None: not asked for);
    inputs: {flag: path, list of paths or None}, the files it reads.
    """
    given = {flag: path for flag, path in outputs.items() if path is not None}
    for flag, path in given.items():
        check_target(path, flag)
    seen = []
    for flag, path in given.items():
        for other, other_path in seen:
            if _same_file(path, other_path):
                raise InputError(f"{other} {other_path} and {flag} {path} are the same file: give each "
                                 f"output its own path")
        seen.append((flag, path))
    for in_flag, paths in (inputs or {}).items():
        for in_path in [paths] if isinstance(paths, (str, os.PathLike)) else paths or []:
            for flag, path in given.items():
                if _same_file(path, in_path):
                    raise InputError(f"{flag} {path} would replace {in_path}, which the run reads "
                                     f"({in_flag}): write the output to another path")


def check_target(path, flag="the output", probe=True):
    """Refuse a path that cannot be written through a temporary file beside it: empty, a folder
    or a device, in a missing or read-only folder, a name too long once made temporary. probe: also create and
    remove a temporary file there (atomic_write, about to create one, skips it)."""
    if str(path) == "":
        raise InputError(f"{flag} got an empty path: give a file name")
    target = Path(path)
    if target.is_dir():
        raise InputError(f"cannot write {flag} {path}: it is a folder; give a file name")
    if target.exists() and not target.is_file():  # the rename would replace a device or a pipe
        raise InputError(f"cannot write {flag} {path}: it is not a regular file (a device, a pipe or a "
                         f"socket); give a file name")
    folder = target.absolute().parent
    if not folder.is_dir():
        raise InputError(f"cannot write {flag} {path}: the folder {folder} does not exist")
    name = os.fsencode(temporary_prefix(target) + "X" * RANDOM_CHARS + ".tmp")
    overhead = len(name) - len(os.fsencode(target.name))
    name_max, path_max = _limit(folder, "PC_NAME_MAX", 255), _limit(folder, "PC_PATH_MAX", 4096)
    if len(name) > name_max:
        raise InputError(f"cannot write {flag} {path}: the name is too long; its temporary name needs "
                         f"{len(name)} bytes and the folder allows {name_max}: use a name of at most "
                         f"{name_max - overhead} bytes")
    if len(os.fsencode(str(folder))) + 1 + len(name) >= path_max:
        raise InputError(f"cannot write {flag} {path}: the path is too long ({path_max} bytes at most, "
                         f"temporary name included): use a shorter folder or name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {flag} {path}: the folder {folder} is not writable")
    if not probe:
        return
    try:  # os.access cannot tell everything (/proc, read-only mounts, quotas): try for real
        fd, probe_path = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(target), suffix=".tmp")
    except OSError as err:
        raise InputError(f"cannot write {flag} {path}: a file cannot be created in {folder} "
                         f"({_reason(err)})") from None
    os.close(fd)
    os.unlink(probe_path)


def _limit(folder, name, default):
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):  # not on this OS or file system: the usual value
        return default


def _same_file(a, b):
    """True when two paths name one file: the same resolved path, or (both existing) the same inode."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _reason(err):
    """An exception's message on one line: OSError's strerror, or the first line of the text."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    lines = str(err).strip().splitlines()
    return " ".join(lines[0].split()) if lines else type(err).__name__


def _free_space(folder, err):
    """torch.save's writer says 'unexpected pos 1088 vs 982' where the disk is full: say how
    much room there is, so the reader can tell. OSError names its reason itself."""
    if isinstance(err, OSError):
        return ""
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return ""
    return f" ({stat.f_bavail * stat.f_frsize:,} bytes free on that file system)"


# ----------------------------------------------------------------------------- writing


def temporary_prefix(path):
    """The temporary names of `path` start with this (mkstemp appends RANDOM_CHARS and .tmp)."""
    return f".{Path(path).name}.{TAG}-{os.getpid()}-"


def atomic_write(path, write):
    """Call write(binary_file) on a temporary file beside `path`, fsync it, then rename it over
    `path`. Until the rename, `path` keeps its old content (or stays absent). If write raises an
    OSError (a full disk) or a RuntimeError (torch.save's writer reports a failed write as one),
    the temporary file is removed and InputError says so in one line; any other exception
    propagates after the same cleanup. The rename is atomic on POSIX and Windows when both names
    are in the same folder, which is why the temporary file is created there.
    """
    path = Path(path)
    check_target(path, probe=False)
    folder = path.absolute().parent
    sweep_stale(path)
    existed = path.exists()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=temporary_prefix(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(err, (OSError, RuntimeError)):
            kept = f"{path} keeps its old content" if existed else f"{path} was not created"
            reason = _reason(err) + _free_space(folder, err)
            raise InputError(f"could not write {path}: {reason}; {kept}") from None
        raise
    _fsync_folder(folder)


def sweep_stale(path):
    """Remove the temporary files of `path` left by writers that were killed.

    Only names of exactly our pattern for this target are considered, and one is removed when
    both hold: its writer's PID runs no process on this machine, and it has not been modified
    for STALE_SECONDS. The PID alone would do on one machine, but a folder shared over the
    network can hold a live write from a process on another machine, whose PID means nothing
    here; a live write keeps touching its file, so the age spares it. A reused PID only delays
    a sweep. Returns the removed paths.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.{TAG}-") + r"(\d+)-[A-Za-z0-9_]{%d}\.tmp" % RANDOM_CHARS)
    folder, removed, now = path.absolute().parent, [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _runs(int(match.group(1))):
            continue
        try:
            idle = now - entry.stat(follow_symlinks=False).st_mtime
            if entry.is_file(follow_symlinks=False) and idle > STALE_SECONDS:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
    return removed


def _runs(pid):
    """True when a process with this PID exists here (or might: another user's, or unknown)."""
    if pid == os.getpid() or os.name != "posix":  # Windows' os.kill(pid, 0) would send CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError, ValueError):
        return True  # it exists as another user's process, or the OS cannot say: keep the file
    return True


def _umask():
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make the rename itself durable where the OS allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

