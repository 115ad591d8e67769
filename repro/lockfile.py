"""Read a hashed lock (pip-tools format, compiled by uv), check an environment against it.
Standard library only.

The driver runs this module with the kernel's own interpreter (`python -m repro.lockfile LOCK`),
so `importlib.metadata` sees the kernel's distributions, not the driver's. Three levels of check:
every locked distribution is installed at its locked version and nothing else is installed;
every installed file still has the sha256 that pip wrote into the distribution's RECORD, which
catches an installed file edited after the fact; and every file in site-packages is one of those
(see `strays`), which catches a file added there, such as a `.pth` that runs at every start.

Hashing every file of a kernel (1-2 GB) costs seconds a run, so the check remembers, in the
kernel's own folder, each file it found intact with its inode, size, mtime and ctime, as git's
index does; a later check hashes only the files whose status differs. No write leaves the
ctime unchanged, and a file changed less than RACY seconds before a check is hashed again next
time, so an edited file is never taken for the one that was hashed.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from stat import S_ISREG


def normalize(name: str) -> str:
    """PEP 503 project name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: str | Path) -> hashlib._Hash:
    """The sha256 of a file, read in 1 MiB chunks (installed libraries reach hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest


REQUIREMENT = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[A-Za-z0-9._,-]*\])?\s*==\s*"
    r"(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)"
    r"(?:\s*;\s*(?P<marker>[A-Za-z0-9_ .'\"<>=!~(),-]+?))?"
)
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
TARGET = re.compile(r"^# python: (\d+\.\d+)\s*$", re.MULTILINE)
MARKER_WORDS = {  # PEP 508 environment markers: the only bare words a marker may hold
    *("python_version", "python_full_version", "os_name", "sys_platform", "platform_release"),
    *("platform_system", "platform_version", "platform_machine", "implementation_name"),
    *("platform_python_implementation", "implementation_version", "extra"),
    *("and", "or", "not", "in"),
}


def target_python(text: str) -> str | None:
    """The Python version (`3.12`) that a requirements.in or lock declares in a `# python: X.Y`
    line: the one its lock is compiled for and its kernel must run on."""
    match = TARGET.search(text)
    return match[1] if match else None


def marker_ok(marker: str | None) -> bool:
    """True for no marker or one made of PEP 508 variables, operators and quoted strings."""
    words = re.findall(r"[A-Za-z_.]+", re.sub(r"'[^']*'|\"[^\"]*\"", " ", marker or ""))
    return set(words) <= MARKER_WORDS


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]  # sha256 hex digests of the files pip may install
    marker: str | None = None  # an environment marker, e.g. sys_platform == 'linux'

    def line(self, name: str) -> str:
        marker = f" ; {self.marker}" if self.marker else ""
        hashes = "".join(f" \\\n    --hash=sha256:{h}" for h in sorted(self.hashes))
        return f"{name}=={self.version}{marker}{hashes}\n"


def read_lock(text: str) -> dict[str, Pin]:
    """`{normalized name: Pin}` from a hashed lock, strictly: every requirement is
    `name==version` with sha256 hashes, and nothing else is accepted (no pip options such as
    --index-url or --find-links, no -e, -r or URL requirements), so a lock read from a shared
    report can only name packages and versions. ValueError names the first offending line."""
    pins: dict[str, Pin] = {}
    for number, line in enumerate(text.replace("\\\n", " ").splitlines(), 1):
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if not line:
            continue
        hashes = frozenset(HASH.findall(line))
        requirement = HASH.sub("", line).strip()
        match = REQUIREMENT.fullmatch(requirement)
        if not (match and hashes and marker_ok(match["marker"])):
            raise ValueError(
                f"unsupported lock line {number} (expected name==version --hash=sha256:...): "
                f"{line[:80]!r}"
            )
        name = normalize(match["name"])
        if name in pins:
            raise ValueError(f"lock line {number} pins {name} a second time")
        pins[name] = Pin(match["version"], hashes, match["marker"])
    return pins


def parse_lock(text: str) -> dict[str, str]:
    """`{normalized name: version}` from a lock (see read_lock)."""
    return {name: pin.version for name, pin in read_lock(text).items()}


def render(pins: dict[str, Pin]) -> str:
    """A lock holding exactly `pins`: what a lock from elsewhere is rewritten to before pip
    reads it, so only validated names, versions and hashes reach pip."""
    return "".join(pins[name].line(name) for name in sorted(pins))


def lock_changes(theirs: dict[str, Pin], ours: dict[str, Pin]) -> list[str]:
    """How the lock `theirs` differs from `ours`, one line per package, as `diff` marks them:
    `+` only in theirs (would be installed), `-` only in ours, `~` another version, environment
    marker or files. Markers are shown: they decide whether a line installs at all."""

    def pinned(pin: Pin) -> str:
        return f"=={pin.version}" + (f" ; {pin.marker}" if pin.marker else "")

    changes = []
    for name in sorted(set(theirs) | set(ours)):
        a, b = ours.get(name), theirs.get(name)
        if a == b:
            continue
        if a is None or b is None:
            changes.append(f"+ {name}{pinned(b)}" if a is None else f"- {name}{pinned(a)}")
        elif (a.version, a.marker) != (b.version, b.marker):
            changes.append(f"~ {name}{pinned(a)} -> {name}{pinned(b)}")
        else:
            changes.append(f"~ {name}{pinned(a)}: other files")
    return changes


def prefix() -> str:
    """The folder of the environment running this check. The driver runs it without `site`
    (python -S: kernels.verify), which is what sets a venv's sys.prefix; a venv is the folder
    above its interpreter's, holding pyvenv.cfg."""
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    return venv if os.path.isfile(os.path.join(venv, "pyvenv.cfg")) else sys.prefix


def site_packages() -> list[str]:
    """The running environment's site-packages folders, each once (lib64 may link to lib).
    Paths added by PYTHONPATH (the project's own code, for one) are not the lock's concern."""
    paths = sysconfig.get_paths(vars={"base": prefix(), "platbase": prefix()})
    unique = {os.path.realpath(paths[k]): paths[k] for k in ("platlib", "purelib")}
    return sorted(unique.values())


def installed() -> dict[str, metadata.Distribution]:
    """The distributions installed in the running environment's site-packages, by normalized
    name."""
    return {normalize(d.metadata["Name"]): d for d in metadata.distributions(path=site_packages())}


RECORDED = "repro-verified.json"  # in the environment's prefix: files found intact, by status
RACY = 2.0  # seconds: a file changed this recently may change again within one ctime tick


def record(dist: metadata.Distribution) -> list[tuple[str, str]]:
    """(path, urlsafe-base64 sha256 or "") of each file in the distribution's RECORD; RECORD
    itself, .pyc files and the like carry no sha256. Read as CSV: `dist.files` builds a Path per
    file, seconds for a kernel's 30,000."""
    rows = csv.reader((dist.read_text("RECORD") or "").splitlines())
    return [
        (row[0], row[1][7:] if row[1:2] and row[1].startswith("sha256=") else "")
        for row in rows
        if row
    ]


def hashed_files(dist: metadata.Distribution) -> list[tuple[str, str]]:
    """(path in RECORD, sha256) of each file RECORD gives a sha256 for."""
    return [(path, digest) for path, digest in record(dist) if digest]


def strays(dists: list[metadata.Distribution]) -> list[str]:
    """The files in site-packages (relative to it) that no distribution of `dists` accounts for.

    Allowed, and nothing else: a file a RECORD gives a sha256 for (checked against it, for a
    locked distribution; an unlocked one is drift of its own), each distribution's RECORD, and
    bytecode in a `__pycache__` of such a file (uv compiles it after installing, so no RECORD
    hashes it; Python loads it only beside its source, of the mtime and size it was compiled
    from). So a startup hook (a `.pth` file, sitecustomize or usercustomize) is always one a
    RECORD hashes. A kernel is a `python -m venv` made without pip: no file in its site-packages
    is the venv's own (no `_virtualenv.pth`, which virtualenv and `uv venv` add); bin/activate
    and pyvenv.cfg lie outside it. A symlinked folder counts as a file: no RECORD names one."""
    owned = set()
    for dist in dists:
        base = dist.locate_file("")
        for path, digest in record(dist):
            if digest or os.path.basename(path) == "RECORD":
                owned.add(os.path.normpath(f"{base}/{path}"))
    found = []
    for top in site_packages():
        for folder, subfolders, files in os.walk(top):  # symlinked folders are not walked
            links = [s for s in subfolders if os.path.islink(f"{folder}/{s}")]
            bytecode = os.path.basename(folder) == "__pycache__"
            for name in files + links:
                path = f"{folder}/{name}"
                if path in owned or (
                    bytecode
                    and name.endswith(".pyc")
                    and f"{os.path.dirname(folder)}/{name.split('.')[0]}.py" in owned
                ):
                    continue
                found.append(os.path.relpath(path, top))
    return sorted(found)


def status(path: str) -> list[int] | None:
    """What changes whenever a regular file's content does (ctime cannot be set back by a user);
    None when there is no regular file at `path`."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return [s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns] if S_ISREG(s.st_mode) else None


def recorded(where: Path) -> dict[str, list]:
    """The files an earlier check found intact: {path: [RECORD hash, *status]}; an unreadable
    record is no record (everything is hashed again)."""
    try:
        data = json.loads(where.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(where: Path, intact: dict[str, list]) -> None:
    """Write the record atomically; an environment that cannot be written to keeps none."""
    try:
        fd, tmp = tempfile.mkstemp(dir=where.parent, prefix=f".{where.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(intact, f)
        os.replace(tmp, where)
    except OSError:
        pass


@dataclass
class FileCheck:
    """Checks files against their RECORD hashes, hashing only those not known intact."""

    known: dict[str, list] = field(default_factory=dict)
    intact: dict[str, list] = field(default_factory=dict)
    hashed: int = 0
    started: float = field(default_factory=time.time)

    def modified(self, dist: metadata.Distribution) -> list[str]:
        """Files of `dist` whose content no longer matches the sha256 in its RECORD."""
        base = str(dist.locate_file(""))
        changed = []
        for name, expected in hashed_files(dist):
            path = os.path.normpath(os.path.join(base, name))
            now = status(path)
            if now is None:
                changed.append(f"{name} (missing)")
                continue
            now = [expected, *now]
            if self.known.get(path) != now:
                self.hashed += 1
                digest = sha256(path).digest()
                if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != expected:
                    changed.append(name)
                    continue
            if now[-1] < (self.started - RACY) * 1e9:
                self.intact[path] = now
        return changed


@dataclass
class LockCheck:
    lock_sha256: str
    missing: list[str] = field(default_factory=list)  # locked, not installed
    versions: list[str] = field(default_factory=list)  # "name: locked X, installed Y"
    extra: list[str] = field(default_factory=list)  # installed, not locked
    modified: list[str] = field(default_factory=list)  # "name: path" edited after install
    strays: list[str] = field(default_factory=list)  # in site-packages, no RECORD's (`strays`)
    files_checked: int = 0
    files_hashed: int = 0  # of those, read again: new, or changed since a check found them intact

    @property
    def ok(self) -> bool:
        return not (self.missing or self.versions or self.extra or self.modified or self.strays)

    def problems(self) -> list[str]:
        return (
            [f"missing {n}" for n in self.missing]
            + [f"version {v}" for v in self.versions]
            + [f"not in lock {n}" for n in self.extra]
            + [f"modified {m}" for m in self.modified]
            + [f"stray file site-packages/{s} (installed by no distribution)" for s in self.strays]
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    @classmethod
    def from_dict(cls, data: dict) -> LockCheck:
        return cls(**{k: v for k, v in data.items() if k != "ok"})


def verify(lock_path: str | Path, check_files: bool = True) -> LockCheck:
    """Compare the running interpreter's distributions with the lock at `lock_path`."""
    text = Path(lock_path).read_text()
    pins = parse_lock(text)
    result = LockCheck(lock_sha256=hashlib.sha256(text.encode()).hexdigest())
    dists = installed()
    for name, version in sorted(pins.items()):
        dist = dists.get(name)
        if dist is None:
            result.missing.append(name)
        elif dist.version != version:
            result.versions.append(f"{name}: locked {version}, installed {dist.version}")
    result.extra = sorted(set(dists) - set(pins))
    if check_files:
        where = Path(prefix()) / RECORDED
        files = FileCheck(known=recorded(where))
        for name in sorted(set(dists) & set(pins)):
            result.files_checked += len(hashed_files(dists[name]))
            result.modified += [f"{name}: {path}" for path in files.modified(dists[name])]
        result.files_hashed = files.hashed
        result.strays = strays(list(dists.values()))
        if files.intact != files.known:
            remember(where, files.intact)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m repro.lockfile LOCK`: print the check as JSON; exit 0 whether or not it passed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m repro.lockfile LOCK", file=sys.stderr)
        return 2
    print(json.dumps(verify(args[0]).to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
