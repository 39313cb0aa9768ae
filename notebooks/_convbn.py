"""Shared helpers for the convbn-diag notebooks.

The notebooks drive the convbn-diag binary and read its JSON and CSV. This
module finds or builds the binary, runs it, and gives every notebook a
temporary folder for the files the tool writes, so executing a notebook
never writes into the repository.
"""

import atexit
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
"""Repository root: the folder above notebooks/."""

WORKDIR = pathlib.Path(tempfile.mkdtemp(prefix="convbn-notebook-"))
"""Temporary folder for the binary and the tool's output files, removed when the kernel exits."""

atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)

_binary = None


def binary():
    """Return the path of the convbn-diag binary.

    The environment variable CONVBN_DIAG names an existing binary. Without
    it, `go build` compiles ./cmd/convbn-diag into WORKDIR once per kernel.
    """
    global _binary
    if _binary is not None:
        return _binary
    named = os.environ.get("CONVBN_DIAG")
    if named:
        path = pathlib.Path(named).expanduser().resolve()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(
                f"CONVBN_DIAG={named!r} is not an executable file; "
                "unset it to build the tool with go build, or point it at a built binary"
            )
        _binary = str(path)
        return _binary
    if shutil.which("go") is None:
        raise FileNotFoundError(
            "go not found on PATH: install Go 1.26 or set CONVBN_DIAG to a built convbn-diag binary"
        )
    target = WORKDIR / "convbn-diag"
    subprocess.run(
        ["go", "build", "-o", str(target), "./cmd/convbn-diag"],
        cwd=REPO,
        check=True,
    )
    _binary = str(target)
    return _binary


def run(*args, ok=(0,)):
    """Run convbn-diag with args in WORKDIR and return its standard output.

    A nonzero exit status outside ok raises RuntimeError with the tool's
    standard error, so a failing command fails the notebook cell.
    """
    command = [binary(), *map(str, args)]
    result = subprocess.run(command, cwd=WORKDIR, capture_output=True, text=True)
    if result.returncode not in ok:
        raise RuntimeError(
            f"{' '.join(command[1:])} exited with status {result.returncode}:\n{result.stderr}"
        )
    return result.stdout


def run_json(*args, ok=(0,)):
    """Run convbn-diag with args and parse its standard output as JSON."""
    return json.loads(run(*args, ok=ok))


def flag_defaults(command):
    """Return {flag: default} parsed from `convbn-diag COMMAND --help`.

    Flags whose help shows no default are left out; the values stay strings.
    """
    import re

    pattern = re.compile(r"^\s+(?:-\w, )?--([\w-]+)\b.*\(default ([^)]*)\)\s*$", re.M)
    return dict(pattern.findall(run(command, "--help")))


def settings(command, chosen):
    """Return a table of the flags in chosen next to COMMAND's defaults.

    chosen is a flat list of flags and values as passed to run, such as
    ["--steps", 40]; a boolean flag written as --name=false counts too.
    """
    import pandas as pd

    defaults = flag_defaults(command)
    rows, items = [], [str(item) for item in chosen]
    i = 0
    while i < len(items):
        name = items[i].lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            value = items[i + 1]
            i += 2
        else:
            value = "true"
            i += 1
        rows.append({"flag": "--" + name, "this notebook": value, "default": defaults.get(name, "not set")})
    return pd.DataFrame(rows)


def link(path):
    """Link path into WORKDIR under its base name and return that name.

    Commands run in WORKDIR, so passing the returned name keeps this
    machine's folders out of the tool's output and the committed notebooks.
    """
    source = pathlib.Path(path).resolve()
    target = WORKDIR / source.name
    if not target.exists():
        target.symlink_to(source)
    return source.name


def output(name):
    """Return the path of a file called name inside WORKDIR."""
    return str(WORKDIR / name)


def checkpoints_dir():
    """Return the folder of real checkpoints, or None when it is absent.

    CONVBN_CHECKPOINTS overrides the default, ../shared/checkpoints beside
    the repository.
    """
    folder = pathlib.Path(
        os.environ.get("CONVBN_CHECKPOINTS", REPO.parent / "shared" / "checkpoints")
    )
    return folder if folder.is_dir() else None


def read_safetensors(path):
    """Read a safetensors file into a dict of float64 numpy arrays.

    Only the float dtypes the fuse command writes (F16, BF16, F32, F64) are
    converted; other tensors are skipped.
    """
    import numpy as np

    data = pathlib.Path(path).read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    body = data[8 + header_size :]
    dtypes = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = body[start:end]
        if info["dtype"] in dtypes:
            values = np.frombuffer(raw, dtype=dtypes[info["dtype"]]).astype(np.float64)
        elif info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            values = bits.view(np.float32).astype(np.float64)
        else:
            continue
        tensors[name] = values.reshape(info["shape"])
    return tensors
