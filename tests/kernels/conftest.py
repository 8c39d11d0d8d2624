"""Without a GPU, the Triton kernels are tested in Triton's interpreter.

Triton decides at import time whether its own helpers are interpreted, so the variable must be
set before anything imports ``triton``; this file is imported before the test modules here.
"""

import os
import sys

import torch

if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")
