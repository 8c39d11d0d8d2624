"""``python -m spikeshield``: the ``spikeshield`` command (``torchrun -m spikeshield`` too)."""

from spikeshield.cli import entry

if __name__ == "__main__":
    entry()
