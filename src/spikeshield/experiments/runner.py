"""``spikeshield experiment`` and ``spikeshield run``: train then evaluate every cell, then report.

For each selected cell of a :class:`~spikeshield.experiments.plan.Plan` the runner trains the
run (:func:`~spikeshield.experiments.pipeline.train_cell`, continuing an interrupted one) and
evaluates it (:func:`~spikeshield.experiments.pipeline.evaluate_cell`, reusing finished
evaluations), in this process or in ``jobs`` worker processes. Then every finished cell of the
grid found in the output folder is aggregated by :mod:`spikeshield.analysis.report` into
``summary.json``, ``table.md``, ``table.csv`` and one PNG per dataset × model. Rerunning the same
command after a crash finishes the job; nothing already trained or evaluated is redone or
overwritten, and a run folder trained with other settings is refused before any work starts.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from spikeshield import validate
from spikeshield.analysis.report import (
    CSV_FILE,
    SUMMARY_FILE,
    TABLE_FILE,
    Entry,
    aggregate,
    read_summary,
    split_tag,
    write_report,
)
from spikeshield.analysis.robustness import EVALUATIONS_DIR, ROBUSTNESS_FILE, read_evaluation
from spikeshield.analysis.traces import write_traces
from spikeshield.environment import environment
from spikeshield.errors import DataError, UsageError
from spikeshield.experiments.pipeline import EvalSettings, cell_evaluations, evaluate_cell, train_cell
from spikeshield.experiments.plan import SHRINK_FLAGS, Cell, Plan, build_models, load_plan, shrink
from spikeshield.io import MAX_JSON_BYTES, atomic_write_text, ensure_dir, read_regular, refuse_to_replace
from spikeshield.runs import same_weights, weights_digest
from spikeshield.runtime import configure_threads, threads_per_job
from spikeshield.training.run_files import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    read_metrics,
    read_run_config,
)
from spikeshield.training.trainer import settings_differences

COMMAND_FILE = "COMMAND"


def worker_setup(jobs: int) -> int:
    """Thread policy of one of ``jobs`` parallel cell workers: the usable CPUs (or the explicit
    ``SPIKESHIELD_THREADS`` / ``OMP_NUM_THREADS``) split evenly, at least one thread each
    (:func:`spikeshield.runtime.threads_per_job`). Returns the threads set."""
    return configure_threads(threads_per_job(jobs))


def _quiet(_message: str) -> None:
    pass


def _cell_job(
    plan: Plan, cell: Cell, out: Path, data_root: str | None, device: str, progress: bool | None
) -> tuple[Cell, float]:
    """Train then evaluate one cell (here or in a worker); returns the cell and its seconds."""
    t0 = time.perf_counter()
    train_cell(plan, cell, out, data_root=data_root, device=device, progress=progress, log=_quiet)
    evaluate_cell(plan, cell, out, data_root=data_root, device=device, progress=progress, log=_quiet)
    return cell, time.perf_counter() - t0


def _name(cell: Cell) -> str:
    steps = "" if cell.time_steps is None else f" T={cell.time_steps}"
    return f"{cell.dataset} {cell.model}{steps} {cell.neuron} {cell.mode} seed {cell.seed}"


def check_out(plan: Plan, out: Path, cells: Sequence[Cell], device: str, overwrite: bool = False) -> None:
    """Refuse, before any work, an output folder whose summary is another experiment's (unless
    ``overwrite``: the summary is then replaced, the runs are kept), a run folder that holds a
    run trained with other settings (always), and a damaged run or evaluation file anywhere in
    the grid (always: :func:`collect` reads them all once the work is done).

    Raises:
        UsageError: another experiment's summary, or a run trained with other settings.
        DataError: a damaged ``summary.json``, run file or ``robustness.json``, naming it.
    """
    if (out / SUMMARY_FILE).is_file() and not overwrite:
        saved = read_summary(out / SUMMARY_FILE)
        if saved.get("plan_fingerprint") != plan.fingerprint():
            raise UsageError(
                f"{out} holds the summary of another experiment or of other settings "
                f"({saved.get('title') or saved.get('name')!r}); pass --overwrite to replace the "
                "summary (runs and evaluations are kept), or choose another --out"
            )
    if not (out / SUMMARY_FILE).is_file():  # tables beside no summary: not ours to replace
        refuse_to_replace([out / TABLE_FILE, out / CSV_FILE], overwrite=overwrite, what="table")
    check_grid_files(plan, out)
    for cell in cells:
        run_dir = plan.run_dir(out, cell)
        if (run_dir / CONFIG_FILE).is_file():
            saved = read_run_config(run_dir)["train"]
            diffs = settings_differences(saved, plan.train_config(cell, device=device))
            if diffs:
                raise UsageError(
                    f"{run_dir} was trained with other settings ({', '.join(diffs)}); nothing is "
                    "overwritten: choose another --out for these settings"
                )


def _present(path: Path) -> bool:
    """Something is at ``path``: a file, a FIFO, a folder or a link (even a broken one)."""
    return path.exists() or path.is_symlink()


def _evaluation_path(run_dir: Path, settings: EvalSettings) -> Path:
    """Where the run in ``run_dir`` keeps its evaluation under ``settings``."""
    return run_dir / EVALUATIONS_DIR / settings.folder_name() / ROBUSTNESS_FILE


def check_grid_files(plan: Plan, out: Path) -> None:
    """Read every run file and ``robustness.json`` of the grid already in ``out`` through its
    schema (selected cells or not), so that a damaged, hostile or not-regular one is an error
    now, before any work, rather than once every cell has been trained.

    Raises:
        DataError: one line naming the first damaged file (and the field).
    """
    for cell in plan.cells():
        run_dir = plan.run_dir(out, cell)
        if _present(run_dir / CONFIG_FILE):
            read_run_config(run_dir)
        if _present(run_dir / METRICS_FILE):
            read_metrics(run_dir / METRICS_FILE)
        for settings in cell_evaluations(plan, cell):
            if _present(_evaluation_path(run_dir, settings)):
                read_evaluation(_evaluation_path(run_dir, settings))


def run_cells(
    plan: Plan,
    out: Path,
    cells: Sequence[Cell],
    *,
    jobs: int = 1,
    data_root: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> None:
    """Train and evaluate ``cells``; ``jobs`` > 1 runs them in that many worker processes.

    Workers are fresh (spawned) processes: a training mode registered in a module that the
    worker does not import (a script's ``__main__``, say) is unknown there; call from a script
    under ``if __name__ == "__main__":``."""
    validate.positive_int("--jobs", jobs)
    started = time.perf_counter()
    if jobs == 1:
        for i, cell in enumerate(cells, 1):
            log(f"[{i}/{len(cells)}] {_name(cell)} ({time.perf_counter() - started:.0f}s so far)")
            _cell_job(plan, cell, out, data_root, device, None)
        return
    log(f"{len(cells)} cells in {jobs} worker processes, {threads_per_job(jobs)} thread(s) each")
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds OpenMP threads
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=worker_setup, initargs=(jobs,)) as pool:
        futures = [pool.submit(_cell_job, plan, cell, out, data_root, device, False) for cell in cells]
        try:
            for i, future in enumerate(as_completed(futures), 1):
                cell, seconds = future.result()
                log(f"[{i}/{len(cells)}] done: {_name(cell)} ({seconds:.0f}s)")
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _cell_entries(plan: Plan, cell: Cell, out: Path) -> list[Entry] | None:
    """The finished evaluations of one cell, or None if the cell is not (fully) there: no run
    folder, training not complete, trained with other settings, or an evaluation missing or made
    with other settings or weights. A damaged file is an error naming it, not a missing cell.

    Raises:
        DataError: a run file or ``robustness.json`` of the cell is damaged.
    """
    run_dir = plan.run_dir(out, cell)
    if not all((run_dir / f).is_file() for f in (CONFIG_FILE, METRICS_FILE, MODEL_FILE)):
        return None
    metrics = read_metrics(run_dir / METRICS_FILE)
    config = read_run_config(run_dir)["train"]
    if not metrics["complete"] or set(settings_differences(config, plan.train_config(cell))) - {"device"}:
        return None
    weights = weights_digest(run_dir)
    results = []
    evaluations = cell_evaluations(plan, cell)
    for settings in evaluations:
        path = _evaluation_path(run_dir, settings)
        result = read_evaluation(path) if path.is_file() else {}
        recorded = result.get("inputs", {}).get("weights_sha256")
        if result.get("settings_sha256") != settings.digest() or not same_weights(recorded, run_dir, weights):
            return None
        results.append(result)
    run = str(run_dir.relative_to(out))
    variant = plan.variant(cell)
    model = plan.model_label(cell)
    return [
        Entry(cell.dataset, model, variant, cell.seed, run, r, config, metrics, tag=split_tag(s.split))
        for s, r in zip(evaluations, results, strict=True)
    ]


def collect(plan: Plan, out: Path) -> tuple[list[Entry], list[Cell]]:
    """Entries of every finished cell of the grid in ``out`` (selected this time or not), and the
    cells that are missing."""
    entries: list[Entry] = []
    missing = []
    for cell in plan.cells():
        found = _cell_entries(plan, cell, out)
        if found is None:
            missing.append(cell)
        else:
            entries += found
    return entries, missing


def _flags(shrunk: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return " ".join(map(str, v)) if isinstance(v, list) else str(v)

    flag = {"datasets": "dataset"}
    return " ".join(f"--{flag.get(k, k).replace('_', '-')} {value(v)}" for k, v in shrunk.items())


def _notes(plan: Plan, missing: list[Cell], total: int) -> list[str]:
    notes = [f"Claim under test: {plan.claim}"] if plan.claim else []
    if plan.shrunk:
        notes.append(f"Shrunk from {plan.source} with {_flags(plan.shrunk)} (recorded in summary.json).")
    if missing:
        shown = "; ".join(_name(c) for c in missing[:4]) + (" …" if len(missing) > 4 else "")
        notes.append(
            f"{len(missing)} of {total} cells of the grid are not in this table (not run here): {shown}"
        )
    return notes


def _append_command(out: Path, command: str, commit: str | None) -> None:
    """``COMMAND``: every command that wrote this folder, appended (earlier lines are kept)."""
    path = out / COMMAND_FILE
    before = ""
    if path.exists() or path.is_symlink():
        raw = read_regular(path, "command log", max_bytes=MAX_JSON_BYTES, error=DataError)
        try:
            before = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: the command log is not UTF-8 text; nothing was appended") from None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_text(path, before + f"{command}\n# commit {commit}, {stamp}\n")


def run_plan(
    plan: Plan,
    out_dir: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    jobs: int = 1,
    overwrite: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate the plan's selected cells, then aggregate every finished cell in
    ``out_dir``; writes and returns the summary (see :func:`check_out` for ``overwrite``), to
    which ``written`` is added: the files this call wrote (no PNG without matplotlib)."""
    cells = plan.selected()
    build_models(plan, cells)  # options that fail only when a run is built fail before any work
    out = ensure_dir(out_dir)
    check_out(plan, out, cells, device, overwrite)
    started = time.perf_counter()
    run_cells(plan, out, cells, jobs=jobs, data_root=data_root, device=device, log=log)
    entries, missing = collect(plan, out)
    env = environment(device if device != "auto" else None)
    summary = aggregate(
        entries,
        title=plan.name,
        variants=[plan.variant(c) for c in plan.cells()],
        notes=_notes(plan, missing, len(plan.cells())),
        reduced=[d.name for d in plan.datasets if d.reduced],
        plan=plan.describe(),
        plan_fingerprint=plan.fingerprint(),
        plan_definition=plan.source_text,
        cells_missing=[str(plan.run_dir(Path("."), c)) for c in missing],
        command=command,
        source_commit=env["source_commit"],
        environment=env,
        jobs=jobs,
        seconds=time.perf_counter() - started,
    )
    written = write_report(summary, out)
    written += write_traces(
        entries, out, title=plan.name, reduced=[d.name for d in plan.datasets if d.reduced]
    )
    summary["written"] = [str(p) for p in written]  # not in summary.json itself
    if command:
        _append_command(out, command, env["source_commit"])
    return summary


def run_experiment(path: str | Path, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """:func:`run_plan` on an experiment file; the flags of :func:`.plan.shrink` among ``options``
    (``seeds``, ``models``, ``neurons``, ``datasets``, ``limit_train``, ``limit_test``, ``epochs``)
    shrink it first, the others go to :func:`run_plan`."""
    flags = {k: options.pop(k) for k in (*SHRINK_FLAGS, "datasets") if k in options}
    return run_plan(shrink(load_plan(path), **flags), out_dir, **options)


__all__ = [
    "check_grid_files",
    "check_out",
    "collect",
    "run_cells",
    "run_experiment",
    "run_plan",
    "worker_setup",
]
