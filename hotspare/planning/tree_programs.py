"""The two programs of the tree comparison (``planning/tree_comparison.py``), as the text each
host's own Python runs (``python3 -IS -c``): production's lister and the mirror's comparer.

**The walk is C, not Python.** Each host lists its side with ``find -printf`` (one ``lstat`` per
file, no Python per file), ``sed -z`` and ``sort -z`` (GNU findutils, sed, coreutils, all in
the C locale): ``SIZE MTIME NAME`` records, NUL-ended, in the comparison's order. That order is
the names' components compared one by one, bytes as they are (``/a/b`` before ``/a-c``, because
``a`` comes before ``a-c``); a plain byte sort would put ``/a-c`` first (``-`` is below ``/``).
So ``sed`` rewrites each ``/`` as ``\\x01``, after escaping the two bytes below it that a name may
hold (``\\x01`` as ``\\x02\\x01``, ``\\x02`` as ``\\x02\\x02``): a prefix-free code that keeps the
bytes' order, with the separator below every byte of a name, so ``sort``'s byte order is the
component order. In Python the same order is ``path.replace(b"/", b"\\0")`` (a name never holds a
NUL). Measured on the lab's 100,000 files: the Python walk (``os.scandir`` and ``lstat`` per file,
then the merge's per-record work) was most of the verify step; see
``docs/architecture/replication.md``.

Production sorts into a temporary file and reads it twice: once to size the rolling slice (what
the pass has left after its cursor), once to stream the records, so it walks its tree once. The
mirror lists its copy the same way, at the same time as production (both start when the pipe
starts), then merges production's stream with its own listing.

Python is left with what needs a decision per record: the exclude patterns (fnmatch, as
``planning/rsync_outcomes.matches_any``; a folder's verdict is cached, and a file below an
excluded folder is left out, as a walk that does not enter it would), the slice and the changed
files on production, and on the mirror the checks of every untrusted field of production's
stream, the merge and the hashing of the files production hashed.
"""

COMMON = r'''
import fnmatch, hashlib, json, os, re, stat, subprocess, sys, tempfile

C_LOCALE = dict(os.environ, LC_ALL="C")
# '/' -> \x01 after \x02 -> \x02\x02 and \x01 -> \x02\x01: sort's byte order is the component order
ENCODE = ["sed", "-z", "-e", r"s/\x02/\x02\x02/g", "-e", r"s/\x01/\x02\x01/g", "-e", r"s|/|\x01|g"]
SORT = ["sort", "-z", "-t", " ", "-k", "3"]

class Failed(Exception):
    """A host's own listing failed (a tool missing or broken): not production's answer's fault."""

def header():
    size = int(sys.stdin.buffer.readline())
    return json.loads(sys.stdin.buffer.read(size))

def encoded(text):
    return text.encode("utf-8", "surrogateescape")

def key(path):
    """The comparison's order as plain bytes: components one by one ('/' below every name byte)."""
    return path.replace(b"/", b"\0")

class Excludes:
    """The fleet file's patterns (as planning/rsync_outcomes.matches_any) with the walk's rule:
    below a root, a file is left out when it or a folder between it and its root matches."""

    def __init__(self, patterns, roots):
        self.anchored = tuple(pattern.rstrip("/") for pattern in patterns if pattern.startswith("/"))
        self.full = [re.compile(fnmatch.translate(pattern)) for pattern in patterns]
        self.names = [re.compile(fnmatch.translate(pattern)) for pattern in patterns if not pattern.startswith("/")]
        self.roots = set(roots)
        self.folders = {}

    def matches(self, path):
        text = path.decode("utf-8", "surrogateescape")
        for folder in self.anchored:
            if text == folder or text.startswith(folder + "/"):
                return True
        name = text.rsplit("/", 1)[-1]
        return any(pattern.match(text) for pattern in self.full) or any(pattern.match(name) for pattern in self.names)

    def folder(self, path):
        """A folder below a root is left out, with everything in it (a root itself never)."""
        verdict = self.folders.get(path)
        if verdict is not None:
            return verdict
        unknown = []  # the folder and its parents up to a known one or a root, deepest first
        while path not in self.roots and len(path) > 1 and path not in self.folders:
            unknown.append(path)
            path = path[: path.rfind(b"/")] or b"/"
        verdict = self.folders.get(path, False)
        if len(self.folders) > 10000:  # names come in order: a small cache keeps the hits
            self.folders.clear()
        for folder in reversed(unknown):
            verdict = verdict or self.matches(folder)
            self.folders[folder] = verdict
        return verdict

    def file(self, path):
        return (path not in self.roots and self.folder(path[: path.rfind(b"/")] or b"/")) or self.matches(path)

def find_time(mtime_ns):
    """An mtime as find's %T@ prints it (seconds, a dot, ten digits of fraction)."""
    return b"%d.%09d0" % (mtime_ns // 1000000000, mtime_ns % 1000000000)

def printf_text(raw):
    """Bytes that find's -printf writes as themselves."""
    return raw.replace(b"\\", b"\\\\").replace(b"%", b"%%")

def sorted_listing(roots, real):
    """A temporary file of ``SIZE MTIME NAME`` records (NAME encoded, see ENCODE) of every regular
    file under ``roots`` (never through a link), sorted; ``real(root)`` is where a root is read."""
    listed = tempfile.TemporaryFile()
    try:
        sort = subprocess.Popen(SORT, stdin=subprocess.PIPE, stdout=listed, env=C_LOCALE)
        try:
            encode = subprocess.Popen(ENCODE, stdin=subprocess.PIPE, stdout=sort.stdin, env=C_LOCALE)
        finally:
            sort.stdin.close()  # sed holds it now: sort ends when sed does
        try:
            for root in roots:
                list_root(root, real(root), encode.stdin)
        finally:
            encode.stdin.close()
            states = (encode.wait(), sort.wait())
    except OSError as error:
        raise Failed(f"{error.filename or 'a tool'}: {error.strerror}") from None
    if states != (0, 0):
        raise Failed(f"sed and sort exited {states}")
    listed.seek(0)
    return listed

def list_root(root, where, into):
    """One root's records: find's for a folder, one written here for a file, none for anything else
    (nor for a root ``where`` is None for)."""
    try:
        info = os.lstat(where)
    except (OSError, TypeError):
        return
    if stat.S_ISREG(info.st_mode):
        into.write(b"%d %s %s\0" % (info.st_size, find_time(info.st_mtime_ns), root))
        into.flush()
    elif stat.S_ISDIR(info.st_mode):
        shown = printf_text(root.rstrip(b"/")) + b"/%P\\0"
        argv = ["find", where, "-mindepth", "1", "-type", "f", "-printf", b"%s %T@ " + shown]
        found = subprocess.run(argv, stdout=into, env=C_LOCALE)
        if found.returncode not in (0, 1):  # 1: a folder it could not read, skipped as a walk would
            raise Failed(f"find exited {found.returncode}")

def decoded(name):
    if b"\x02" not in name:
        return name.replace(b"\x01", b"/")
    out, at = bytearray(), 0
    while at < len(name):
        byte = name[at]
        if byte == 2:
            at += 1
            out.append(name[at])
        else:
            out.append(47 if byte == 1 else byte)
        at += 1
    return bytes(out)

def records(listed, excludes):
    """(key, path, size, mtime_ns) of each listed file, as bytes, in order; excluded ones left out."""
    rest = b""
    while True:
        chunk = listed.read1(1 << 20)
        if not chunk:
            if rest:
                raise Failed("the listing ended inside a record")
            return
        parts = (rest + chunk).split(b"\0")
        rest = parts.pop()
        for record in parts:
            size, mtime, name = record.split(b" ", 2)
            path = decoded(name)
            if excludes is not None and excludes.file(path):
                continue
            seconds, _, fraction = mtime.partition(b".")
            if seconds[:1] == b"-":
                mtime = b"%d" % (int(seconds) * 1000000000 + int(fraction[:9]))
            else:
                mtime = seconds + fraction[:9]
            yield key(path), path, size, mtime

def digest_of(descriptor):
    """SHA-256 of a regular file; a short read is its end (Linux), so a small file is one read."""
    digest = hashlib.sha256()
    while True:
        block = os.read(descriptor, 1 << 20)
        digest.update(block)
        if len(block) < 1 << 20:
            return digest.hexdigest()
'''

# Production: header on stdin (a decimal length line, then JSON), records on stdout.
LISTER = (
    COMMON
    + r"""
settings = header()
roots = [encoded(root) for root in settings["roots"]]
excludes = Excludes(settings["excludes"], roots) if settings["excludes"] else None
since = settings["since_ns"]
itemized = {encoded(path) for path in settings["itemized"]}
cursor = key(encoded(settings["cursor"])) if settings["cursor"] else None
runs = settings["runs"]
sources = [(encoded(root), encoded(where)) for root, where in settings.get("sources", [])]
out = open(1, "wb", buffering=1 << 16, closefd=False)

def real_path(path):  # a root with a source (its snapshot) is read there, listed under its own name
    for root, where in sources:
        if path == root or path.startswith(root.rstrip(b"/") + b"/"):
            return where + path[len(root):]
    return path

try:
    listed = sorted_listing(roots, real_path)
except Failed as error:
    sys.stderr.write(f"production could not list its files: {error}\n")
    sys.exit(4)

file_budget = byte_budget = 0
if runs > 0:  # the pass's remaining files and bytes (one read of the listing): the slice is their share
    left_files = left_bytes = 0
    after = cursor is None
    for path_key, _, size, _ in records(listed, excludes):
        if after or path_key > cursor:
            after = True
            left_files += 1
            left_bytes += int(size)
    file_budget, byte_budget = -(-left_files // runs), -(-left_bytes // runs)
    listed.seek(0)

chosen_files = chosen_bytes = 0
slicing = runs > 0
after = cursor is None
for path_key, path, size, mtime in records(listed, excludes):
    out.write(b"L\0%s\0%s\0%s\0" % (path, size, mtime))
    in_slice = False
    if slicing and (after or path_key > cursor):
        after = True
        if chosen_files >= file_budget and chosen_bytes >= byte_budget:
            slicing = False
        else:
            in_slice = True
            chosen_files += 1
            chosen_bytes += int(size)
    if not (in_slice or path in itemized or (since is not None and int(mtime) >= since)):
        continue
    flag = b"s" if in_slice else b"c"
    try:
        descriptor = os.open(real_path(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        out.write(b"X\0%s\0vanished\0" % flag)
        continue
    except OSError as error:
        out.write(b"X\0%s\0%s\0" % (flag, encoded(error.strerror or "unreadable")[:200]))
        continue
    try:
        held = os.fstat(descriptor)
        if not stat.S_ISREG(held.st_mode):
            out.write(b"X\0%s\0not a regular file\0" % flag)
            continue
        sha = digest_of(descriptor)
        out.write(b"D\0%s\0%s\0%d\0%d\0%d\0%d\0%d\0" % (flag, sha.encode(), held.st_mode, held.st_uid, held.st_gid,
                                                       held.st_size, held.st_mtime_ns))
    except OSError as error:
        out.write(b"X\0%s\0%s\0" % (flag, encoded(error.strerror or "unreadable")[:200]))
    finally:
        os.close(descriptor)
out.write(b"E\0")
out.flush()
"""
)

# The mirror: header on stdin, then production's records; differences and a summary on stdout.
COMPARER = (
    COMMON
    + r'''
class Malformed(Exception):
    pass

settings = header()
roots = [encoded(root) for root in settings["roots"]]
tree = encoded(settings["tree"])
excludes = Excludes(settings["excludes"], roots) if settings["excludes"] else None
since = settings["since_ns"]
itemized = {encoded(path) for path in settings["itemized"]}
probes = {encoded(path) for path in settings["probes"]}
cursor = key(encoded(settings["cursor"])) if settings["cursor"] else None
runs = settings["runs"]
max_records, max_differences, max_field = settings["max_records"], settings["max_differences"], settings["max_field"]
inside = tuple(root.rstrip(b"/") + b"/" for root in roots)
out = sys.stdout
counts = {"files": 0, "bytes": 0, "left_files": 0, "left_bytes": 0, "slice_files": 0, "slice_bytes": 0,
          "hashed_files": 0, "hashed_bytes": 0, "differences": 0, "records": 0}
last_slice = None

class Fields:
    """Production's NUL-separated fields, read a megabyte at a time; no field over max_field.
    ``more`` hands the caller a list holding at least ``WANTED`` fields from its position when the
    stream has them, padded with empty fields past the end (``count`` says how many are real)."""

    WANTED = 8  # the longest record (D) has 8 fields

    def __init__(self, stream):
        self.stream, self.rest, self.ended = stream, b"", False

    def more(self, parts, at, count):
        parts = parts[at:count]
        while len(parts) < self.WANTED and not self.ended:
            chunk = self.stream.read1(1 << 20)
            if not chunk:
                self.ended = True
                if self.rest:
                    raise Malformed("it ended inside a record")
                break
            fresh = (self.rest + chunk).split(b"\0")
            self.rest = fresh.pop()
            if len(self.rest) > max_field or (fresh and max(map(len, fresh)) > max_field):
                raise Malformed(f"a field is longer than {max_field} bytes")
            parts += fresh
        count = len(parts)
        if self.ended:
            parts += [b""] * self.WANTED
        return parts, 0, count

def number(value, what, digits=20):
    if len(value) > digits or not value.isdigit():
        raise Malformed(f"{what} is not a number")
    return int(value)

def moment(value, what):
    """An mtime in nanoseconds: digits, a minus sign before 1970."""
    return -number(value[1:], what) if value[:1] == b"-" else number(value, what)

def seconds(mtime_ns):
    return None if mtime_ns is None else mtime_ns / 1e9

def difference(kind, path, mtime_ns):
    counts["differences"] += 1
    if counts["differences"] <= max_differences:
        out.write(json.dumps({"d": kind, "p": path.decode("utf-8", "surrogateescape"), "m": seconds(mtime_ns)},
                             ensure_ascii=True) + "\n")

class Beneath:
    """Opens the copy's file for production's path one folder at a time, never through a link
    (O_NOFOLLOW at every level), so a made-up name never reads outside the copy. The folders of the
    last file stay open: names come in order, so the next file is mostly in the same folder."""

    def __init__(self):
        self.top = os.open(tree or b"/", os.O_RDONLY | os.O_DIRECTORY)
        self.chain = []  # (name, descriptor) of each folder below the top, outermost first

    def open(self, path):
        parts = path.split(b"/")[1:]
        folders = parts[:-1]
        same = 0
        while same < len(self.chain) and same < len(folders) and self.chain[same][0] == folders[same]:
            same += 1
        for _, descriptor in self.chain[same:]:
            os.close(descriptor)
        del self.chain[same:]
        for part in folders[same:]:
            parent = self.chain[-1][1] if self.chain else self.top
            self.chain.append((part, os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)))
        parent = self.chain[-1][1] if self.chain else self.top
        return os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=parent)

beneath = None

def judge(listed, answer, mine):
    """One production file: its listing (path, size, mtime and their digits), its D/X answer or
    None, the copy's listing of it or None."""
    global beneath
    path, size, mtime, size_digits, mtime_digits = listed
    if answer is not None and answer[0] == b"X":
        difference("vanished" if answer[2] == b"vanished" else "unreadable", path, None if answer[2] == b"vanished" else mtime)
        return
    if mine is None:
        difference("missing", path, mtime)
        return
    if answer is None:
        if mine[2] != size_digits and int(mine[2]) != size:
            difference("content", path, mtime)
        elif mine[3] != mtime_digits and abs(int(mine[3]) - mtime) > 1000:
            difference("metadata", path, mtime)
        return
    _, _, sha, mode, uid, gid, _, theirs = answer
    try:
        if beneath is None:
            beneath = Beneath()
        descriptor = beneath.open(path)
    except FileNotFoundError:
        difference("missing", path, mtime)
        return
    except OSError:
        difference("unreadable-copy", path, mtime)
        return
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            difference("content", path, mtime)
            return
        ours = digest_of(descriptor)
        counts["hashed_files"] += 1
        counts["hashed_bytes"] += info.st_size
    except OSError:
        difference("unreadable-copy", path, mtime)
        return
    finally:
        os.close(descriptor)
    # production's mtime when it hashed the file: a change after its listing is still a change
    if ours != sha:
        difference("content", path, max(mtime, theirs))
    elif (info.st_mode, info.st_uid, info.st_gid) != (mode, uid, gid) or abs(info.st_mtime_ns - theirs) > 1000:
        difference("metadata", path, max(mtime, theirs))

def compare(own):
    """Production's stream merged with the copy's listing (``own``), record by record. The checks
    of each field are written out here, not called: this loop runs once per file."""
    global last_slice
    held = next(own, None)
    stream = Fields(sys.stdin.buffer)
    parts, at, count = [], 0, 0
    previous = None
    slice_open = runs > 0
    pending = None  # the last listed file, until we know whether an answer follows it
    found = {}
    seen = 0  # records
    wanted = Fields.WANTED
    endings = (b"/", b"/.", b"/..")
    try:
        while True:
            if count - at < wanted:
                parts, at, count = stream.more(parts, at, count)
            if at >= count:
                raise Malformed("it ended before its end mark")
            kind = parts[at]
            seen += 1
            if seen > max_records:
                raise Malformed(f"it holds more than {max_records} records")
            if kind == b"L":
                if pending is not None:
                    listed, mine, path_key = pending
                    if (since is not None and listed[2] >= since) or listed[0] in itemized:
                        raise Malformed("a changed file was listed without its checksum")
                    if slice_open and (cursor is None or path_key > cursor):
                        slice_open = False
                    judge(listed, None, mine)
                    pending = None
                path, size_digits, mtime_digits = parts[at + 1], parts[at + 2], parts[at + 3]
                at += 4
                if path[:1] != b"/" or b"//" in path or b"/./" in path or b"/../" in path or path.endswith(endings):
                    raise Malformed("a name is not a plain absolute path")
                if not path.startswith(inside) and path not in roots:
                    raise Malformed("a name is outside the service's paths")
                if len(size_digits) > 20 or not size_digits.isdigit():
                    raise Malformed("a size is not a number")
                size = int(size_digits)
                if len(mtime_digits) <= 20 and mtime_digits.isdigit():
                    mtime = int(mtime_digits)
                else:
                    mtime = moment(mtime_digits, "an mtime")
                path_key = path.replace(b"/", b"\0")
                if previous is not None and path_key <= previous:
                    raise Malformed("its names are not in order")
                previous = path_key
                if path in probes:
                    found[path] = mtime
                if excludes is not None and excludes.file(path):
                    continue
                while held is not None and held[0] < path_key:
                    difference("extra", held[1], None)
                    held = next(own, None)
                mine = None
                if held is not None and held[0] == path_key:
                    mine = held
                    held = next(own, None)
                counts["files"] += 1
                counts["bytes"] += size
                if cursor is None or path_key > cursor:
                    counts["left_files"] += 1
                    counts["left_bytes"] += size
                pending = ((path, size, mtime, size_digits, mtime_digits), mine, path_key)
                continue
            if kind == b"D" or kind == b"X":
                if pending is None:
                    raise Malformed("a checksum follows no listed file")
                flag = parts[at + 1]
                if flag not in (b"s", b"c"):
                    raise Malformed("a checksum's mark is neither s nor c")
                if kind == b"D":
                    fields = parts[at + 2 : at + 8]
                    at += 8
                    answer = [kind, flag, fields[0]] + [number(value, "a checksum's field") for value in fields[1:5]]
                    answer.append(moment(fields[5], "a checksum's field"))
                    if len(answer[2]) != 64 or answer[2].strip(b"0123456789abcdef"):
                        raise Malformed("a checksum is not 64 hex digits")
                    answer[2] = answer[2].decode()
                else:
                    answer = [kind, flag, parts[at + 2]]
                    at += 3
                listed, mine, path_key = pending
                after = cursor is None or path_key > cursor
                if flag == b"s":
                    if not (slice_open and after):
                        raise Malformed("its rolling slice is not one run of files after the cursor")
                    counts["slice_files"] += 1
                    counts["slice_bytes"] += listed[1]
                    last_slice = listed[0]
                elif after and slice_open:
                    slice_open = False
                judge(listed, answer, mine)
                pending = None
                continue
            if pending is not None:
                listed, mine, path_key = pending
                if (since is not None and listed[2] >= since) or listed[0] in itemized:
                    raise Malformed("a changed file was listed without its checksum")
                if slice_open and (cursor is None or path_key > cursor):
                    slice_open = False
                judge(listed, None, mine)
                pending = None
            if kind != b"E":
                raise Malformed("a record of an unknown kind")
            at += 1
            break
        if count - at < wanted:
            parts, at, count = stream.more(parts, at, count)
        if at < count:
            raise Malformed("it goes on after its end mark")
    finally:
        counts["records"] = seen
    while held is not None:
        difference("extra", held[1], None)
        held = next(own, None)
    for path, mtime in found.items():
        out.write(json.dumps({"probe": path.decode("utf-8", "surrogateescape"), "m": seconds(mtime)},
                             ensure_ascii=True) + "\n")
    return runs > 0 and slice_open

def in_copy(root):
    """Where the copy holds a root; None (nothing listed) when a link on the way would lead the
    listing elsewhere (find never follows one below it; this keeps the folders above it honest)."""
    where = tree + root
    top = os.path.realpath(tree or b"/")
    return where if os.path.realpath(where) == top.rstrip(b"/") + root else None

try:
    own = records(sorted_listing(roots, in_copy), excludes)
    complete = compare(own)
except Failed as error:
    sys.stderr.write(f"the mirror could not list the copy: {error}\n")
    sys.exit(4)
except Malformed as error:
    sys.stderr.write(f"production's answer is malformed after {counts['records']} record(s): {error}\n")
    sys.exit(3)
summary = dict(counts, complete=complete, truncated=counts["differences"] > max_differences,
               next_cursor=last_slice.decode("utf-8", "surrogateescape") if last_slice is not None else None)
out.write(json.dumps({"summary": summary}, ensure_ascii=True) + "\n")
'''
)

# The function the memory benchmark replaces with made-up files (bench/listing_bench.py).
LISTING_FUNCTION = COMMON[COMMON.index("def sorted_listing(") : COMMON.index("def list_root(")]
