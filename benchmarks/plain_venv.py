"""A plain venv with this project installed as a user would install it (shared by benchmarks).

    python benchmarks/plain_venv.py [DIR]    # create (or reuse) it and print its python

``pip install <repo>`` (not editable) into a fresh venv, so that dependencies are the
newest versions a clean install resolves (wrapt 2.x, whose import pulls in asyncio),
not the development venv's pins. Reused while the installed copy matches the tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(tempfile.gettempdir()) / "autotrace-bench-plain-venv"


def _tree_stamp() -> str:
    """A digest of the installable sources: reinstall when any of them changed."""
    digest = hashlib.sha256()
    for folder in ("autotrace", "patches"):
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    digest.update((REPO / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def plain_python(
    directory: Path = DEFAULT_DIR, as_is: bool = False, extra: tuple[str, ...] = ()
) -> Path:
    """The python of a plain venv with this tree installed (created or refreshed as needed).

    ``as_is``: use the venv as it is (to measure another version installed there).
    ``extra``: more requirements installed with it, in the same resolve (newest versions).
    """
    python = directory / "bin" / "python"
    if as_is:
        return python
    stamp_file = directory / "autotrace-tree.sha256"
    stamp = _tree_stamp() + " " + " ".join(extra)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--force-reinstall", str(REPO), *extra],
            check=True,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        stamp_file.write_text(stamp)
    return python


def versions(python: Path, *names: str) -> dict[str, str]:
    """Installed versions of ``names`` in that venv."""
    code = (
        "import importlib.metadata as m, sys\n"
        "for n in sys.argv[1:]:\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: print(n, '-')\n"
    )
    out = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


if __name__ == "__main__":
    print(plain_python(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
