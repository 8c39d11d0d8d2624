"""Put back the weights of the oscillation grid's runs (not committed) by training them again.

The grid's run folders are committed with their settings (``config.json``), training record
(``metrics.json``) and evaluations (``evaluations/*/robustness.json``), not their weights
(``model.safetensors``, see ``.gitignore``). Training is deterministic on the CPU (seeded per
epoch, one thread), so the weights can be recovered by training each run again with the
experiment's settings into a scratch folder. A retrained run's weights are copied into the grid's
run folder only if they are the ones every committed evaluation of that run recorded
(``inputs.weights_sha256``): the evaluations then belong to them, and ``spikeshield experiment``
reuses them. Evaluations made before spikeshield hashed the tensors recorded the SHA-256 of the
file's bytes, and safetensors writes the header's metadata keys in no fixed order; so the file
is also tried with its metadata keys in every order (same tensors, same bytes otherwise), and the
ordering whose SHA-256 is the recorded one is written: the original file, byte for byte.
Otherwise nothing is copied and the run is reported (its evaluations would have to be made again
on new weights). A run folder that already holds weights, or holds no evaluation, is left alone.

    OMP_NUM_THREADS=1 nice -n 19 python results/oscillation/restore_weights.py \\
        experiments/oscillation.toml results/oscillation/grid --scratch .cache/oscillation-retrain \\
        --data-root ../shared/data [--neurons LABEL ...] [--seeds SEED ...]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from spikeshield.experiments.pipeline import train_cell
from spikeshield.experiments.plan import load_plan, shrink
from spikeshield.io import atomic_write_bytes
from spikeshield.runs import weights_digest
from spikeshield.training.run_files import METRICS_FILE, MODEL_FILE


def recorded_digests(run_dir: Path) -> set[str]:
    """The weight digests the run's committed evaluations name."""
    return {
        json.loads(p.read_text())["inputs"]["weights_sha256"]
        for p in run_dir.glob("evaluations/*/robustness.json")
    }


def _entry(key: str, value: str) -> str:
    return json.dumps(key, ensure_ascii=False) + ":" + json.dumps(value, ensure_ascii=False)


def reorderings(blob: bytes) -> Iterator[bytes]:
    """The safetensors file ``blob`` with its header's metadata keys in every order (the first:
    as written); the tensor entries and data unchanged, the header padded to 8 bytes again."""
    size = struct.unpack("<Q", blob[:8])[0]
    header, data = blob[8 : 8 + size].rstrip(b" "), blob[8 + size :]
    meta = json.loads(header)["__metadata__"]
    written = ('{"__metadata__":{' + ",".join(_entry(k, meta[k]) for k in meta) + "},").encode()
    if not header.startswith(written):
        raise ValueError("unexpected safetensors header layout")
    tensors = header[len(written) :]
    for order in itertools.permutations(meta):
        body = ('{"__metadata__":{' + ",".join(_entry(k, meta[k]) for k in order) + "},").encode()
        body += tensors
        body += b" " * (-len(body) % 8)
        yield struct.pack("<Q", len(body)) + body + data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("grid", type=Path)
    p.add_argument("--scratch", type=Path, required=True, help="where to train (not the grid)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--neurons", nargs="+", default=None)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    args = p.parse_args()
    if args.scratch.resolve() == args.grid.resolve():
        p.error("--scratch must not be the grid")
    plan = shrink(load_plan(args.experiment), neurons=args.neurons, seeds=args.seeds)
    mismatched = 0
    for cell in plan.selected():
        run_dir = plan.run_dir(args.grid, cell)
        name = str(run_dir.relative_to(args.grid))
        want = recorded_digests(run_dir)
        if (run_dir / MODEL_FILE).exists() or not (run_dir / METRICS_FILE).is_file() or not want:
            print(f"{name}: left alone (weights present, or not trained / evaluated in the grid)")
            continue
        t0 = time.process_time()
        train_cell(plan, cell, args.scratch, data_root=args.data_root, device="cpu", log=lambda _m: None)
        trained = plan.run_dir(args.scratch, cell)
        got = weights_digest(trained)
        cpu = time.process_time() - t0
        blob = (trained / MODEL_FILE).read_bytes()
        exact = [b for b in reorderings(blob) if {hashlib.sha256(b).hexdigest()} == want]
        if want == {got}:
            atomic_write_bytes(run_dir / MODEL_FILE, blob)
            print(f"{name}: restored, tensors' digest {got[:12]} = the evaluations' ({cpu:.1f} s CPU)")
        elif exact:
            atomic_write_bytes(run_dir / MODEL_FILE, exact[0])
            print(
                f"{name}: restored byte for byte, file digest {sorted(want)[0][:12]} = the evaluations' "
                f"({cpu:.1f} s CPU)"
            )
        else:
            mismatched += 1
            named = ", ".join(sorted(d[:12] for d in want))
            print(f"{name}: NOT restored: retrained {got[:12]}, evaluations name {named} ({cpu:.1f} s CPU)")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
