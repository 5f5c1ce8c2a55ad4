#!/usr/bin/env bash
# Create .venv with a torch build that fits this machine, then install dllm-lab (editable, with dev tools).
# Idempotent: a second run is a no-op unless pyproject.toml changed.
#   TORCH_VERSION=2.13.0        torch release to install
#   TORCH_INDEX_URL=<url>       force a wheel index, e.g. PyTorch's cu126 index for a specific CUDA build
#   PYTHON=python3.11           interpreter for the virtual environment
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.installed"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
$PIP install -q --upgrade pip

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    echo "setup: torch==$TORCH_VERSION from $TORCH_INDEX_URL"
    $PIP install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  elif $PIP download -q --no-deps --no-index -d "$(mktemp -d)" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    echo "setup: torch==$TORCH_VERSION from a local wheel (pip find-links)"
    $PIP install -q "torch==$TORCH_VERSION"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: GPU found; torch==$TORCH_VERSION from PyPI (CUDA build)"
    $PIP install -q "torch==$TORCH_VERSION"
  else
    echo "setup: no GPU; torch==$TORCH_VERSION CPU build (no multi-GB CUDA download)"
    $PIP install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
$PIP install -q -e ".[dev]"
touch "$stamp"
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
