"""A clean virtual environment with phi4mm installed the way users install it (non-editable, from a
wheel or a source folder), for the install tests. To stay fast and offline it reaches the heavy
dependencies (torch, transformers, gradio...) of the environment running the tests through a
`.pth` file. A folder added that way does not have its own `.pth` files read, so an editable
install of phi4mm there (a `.pth` file and its finder) is not seen: phi4mm itself comes only from
what is installed into the new environment."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path


def clean_venv(folder: Path) -> Path:
    """Makes the environment (without pip: this interpreter's pip installs into it) -> its python."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    (Path(purelib) / "tests_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip(python: Path, *args: str) -> str:
    """This interpreter's pip, acting on the environment of `python`."""
    return run(sys.executable, "-m", "pip", "--python", str(python), *args, "--quiet")


def build_wheel(source: Path, dist: Path) -> Path:
    """The wheel of the project in `source`, built by pip as for an index. Offline, from this
    environment's setuptools, where it builds wheels itself (70.1 and later; the test extra pins
    one); else pip fetches setuptools into an isolated build, as a user's pip does."""
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation(), "--quiet", "--wheel-dir", dist, source)
    return next(dist.glob("phi4mm-*.whl"))


def isolation() -> list[str]:
    """pip's flag to build with this environment's setuptools, where it builds wheels itself."""
    own = importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
    return ["--no-build-isolation"] if own else []


def run(*command, cwd: Path | None = None) -> str:
    """`command`'s output; without PYTHONPATH, which would reach the source tree instead."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([str(p) for p in command], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    if done.returncode:
        raise AssertionError(f"{' '.join(map(str, command))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout
