from pathlib import Path

import pytest

from spikeshield.cli import main
from spikeshield.errors import UsageError
from spikeshield.experiments.plan import load_plan, preset_data, quick_plan, shrink

ROOT = Path(__file__).parents[2]

TINY = """
name = "tiny"
claim = "a test"
seeds = [0, 1]
models = ["mlp"]
model_options = { mlp = { hidden = [32] } }
[neurons.if]
neuron = "if"
[neurons.linear-lif]
neuron = "linear-lif"
options = { leak = 0.1 }
[train]
time_steps = 2
epochs = 1
[datasets.digits]
budget = "1 epoch"
eps = [0.0, 0.1, 0.3]
[evaluate]
attacks = ["fgsm", "pgd"]
steps = 3
gradients = ["bptt", "surrogate:atan:2"]
limit = 40
check_samples = 20
noises = { gaussian = [0.0, 0.3], salt-pepper = [0.0, 0.1] }
"""


MODE_X = '[modes.x]\nmode = "bptt"\ntrain = '


def write(tmp_path, text=TINY, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (('neuron = "if"', 'neuron = "iff"'), "Did you mean 'if'"),
        (('models = ["mlp"]', 'models = ["mpl"]'), "Did you mean 'mlp'"),
        (("[datasets.digits]", "[datasets.digts]"), "Did you mean 'digits'"),
        (('attacks = ["fgsm", "pgd"]', 'attacks = ["pgdd"]'), "unknown attack 'pgdd'"),
        (("eps = [0.0, 0.1, 0.3]", "eps = [-0.1]"), r"datasets\.digits\.eps\[0\]: expected `float` >= 0"),
        (('attacks = ["fgsm", "pgd"]', 'attacks = ["transfer"]'), "transfer attack needs a source"),
        (("steps = 3", "stpes = 3"), "evaluate: unknown key 'stpes'; allowed: .*steps"),
        (("steps = 3", "steps = 0"), r"evaluate\.steps: expected `int` >= 1"),
        (("limit = 40", "limit = -4"), r"evaluate\.limit: expected `int` >= 1"),
        (("limit = 40", 'limit = "all"'), r"evaluate\.limit: expected `int`, got `str`"),
        (
            ("check_samples = 20", "check_samples = 2.5"),
            r"evaluate\.check_samples: expected `int`, got `float`",
        ),
        (("salt-pepper = [0.0, 0.1]", "fog = [0.1]"), "unknown corruption 'fog'"),
        (
            ("salt-pepper = [0.0, 0.1]", 'salt-pepper = "high"'),
            r"evaluate\.noises\.salt-pepper: expected `array`",
        ),
        (
            ("noises =", "corruptions = { gaussian = [0.1] }\nnoises ="),
            "'corruptions' or its old name 'noises'",
        ),
        (('gradients = ["bptt", "surrogate:atan:2"]', 'gradients = ["magic"]'), "unknown gradient"),
        (("epochs = 1", "epochs = 0"), "epochs must be a positive integer"),
        (("epochs = 1", "epoch = 1"), "train: unknown key 'epoch'; allowed: .*epochs"),
        (("seeds = [0, 1]", "seeds = []"), "seeds: expected `array` of length >= 1"),
        (("leak = 0.1", "leek = 0.1"), "neurons.linear-lif.options: .*leek"),
        (('name = "tiny"', "name = "), "not valid TOML"),
        (('name = "tiny"', 'name = "tiny"\nbudgett = 1'), "unknown key 'budgett'"),
        (("[train]", '[modes.x]\nmode = "adversarial"\n[train]'), "unknown training mode 'adversarial'"),
        (("[train]", MODE_X + "{ epochs = 3 }\n[train]"), "modes.x.train: epochs cannot"),
        (("[train]", MODE_X + '{ neuron = "lif" }\n[train]'), "modes.x.train: 'neuron' is set per run"),
        (("[train]", MODE_X + "{ time_step = 3 }\n[train]"), "modes.x.train: unknown.*time_step"),
        (
            ("[train]", MODE_X + "{ time_steps = 0 }\n[train]"),
            r"modes.x.train.time_steps: expected `int` >= 1",
        ),
        (("[neurons.if]", "[neurons.if]\ntrain = { time_steps = 2 }"), "neurons.if: unknown key.*train"),
        (("[train]", '[modes.x]\nmode = "at"\nneurons = ["lif"]\n[train]'), "modes.x.neurons: lif not among"),
        (
            ("[train]", '[modes.x]\nmode = "at"\nneurons = []\n[train]'),
            r"modes.x.neurons: expected `array` of length >= 1",
        ),
        (("[train]", '[modes.x]\nmode = "at"\noptions = { kappa = 2 }\n[train]'), r"modes.x.options: kappa"),
        (("limit = 40", "limit = 40\nsuites = { relaible = {} }"), "unknown evaluation suite 'relaible'"),
        (
            ("limit = 40", "limit = 40\nsuites = { reliable = { steps = 0 } }"),
            r"suites\.reliable\.steps: expected `int` >= 1",
        ),
        (
            ("limit = 40", "limit = 40\nsuites = { reliable = { restarts = 2 } }"),
            "suites.reliable: .*restarts",
        ),
        (("limit = 40", 'limit = 40\nsuites = ["reliable"]'), r"suites: expected `object`, got `array`"),
        (
            ("limit = 40", "limit = 40\nsuites = { rssnn-standard = { assg_rounds = 2 } }"),
            "suites.rssnn-standard: unknown option .assg_rounds. \\(it takes no options",
        ),
        (
            ("limit = 40", "limit = 40\nsuites = { reliable = { assg_samples = 0 } }"),
            r"suites\.reliable\.assg_samples: expected `int` >= 1",
        ),
    ],
)
def test_a_bad_experiment_file_is_rejected_with_one_line_naming_the_key(tmp_path, change, message):
    path = write(tmp_path, TINY.replace(*change))
    with pytest.raises(UsageError, match=message) as err:
        load_plan(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "where, text",
    [
        ("evaluate", TINY.replace("limit = 40", "limit = 40\nsuites = { reliable = { stepz = 20 } }")),
        (
            "datasets.digits.evaluate",
            TINY.replace('budget = "1 epoch"', "evaluate = { suites = { reliable = { stepz = 20 } } }"),
        ),
    ],
)
def test_a_typo_in_a_suites_options_names_the_toml_key_and_its_table(tmp_path, where, text):
    """Not the command line's wording ('fixes its stepz; drop --stepz') nor another table."""
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as err:
        load_plan(path)
    assert str(err.value) == (
        f"{path}: {where}.suites.reliable: unknown option 'stepz' "
        "(it takes steps, queries, assg_rounds, assg_samples; it fixes the others)"
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (('name = "tiny"', 'name = "tiny"\ntime_steps = 4'), "a training setting: put it under [train]"),
        (('name = "tiny"', 'name = "tiny"\npreset = "plif"'), "a training setting: put it under [train]"),
        (('name = "tiny"', 'name = "tiny"\nlr = 0.1'), "a training setting: put it under [train]"),
        (('name = "tiny"', 'name = "tiny"\nlimit = 10'), "an evaluation setting: put it under [evaluate]"),
        (
            ('budget = "1 epoch"', "epochs = 3"),
            "a training setting: put it in this dataset's train = { ... }, or under [train] for every "
            "dataset",
        ),
    ],
)
def test_a_key_of_the_train_or_evaluate_table_elsewhere_says_where_it_belongs(tmp_path, change, message):
    """A top-level 'time_steps' was 'unknown key' with the top level's keys (new-user trial)."""
    path = write(tmp_path, TINY.replace(*change))
    with pytest.raises(UsageError) as err:
        load_plan(path)
    key = change[1].split("\n")[-1].split(" = ")[0]
    at = "datasets.digits: " if change[0].startswith("budget") else ""
    assert str(err.value) == f"{path}: {at}unknown key {key!r} here; it is {message}"


def test_a_top_level_seed_is_not_sent_to_the_evaluate_table(tmp_path):
    """'seed' is [evaluate]'s too, but at the top level it is most likely 'seeds' misspelt."""
    with pytest.raises(UsageError, match="unknown key 'seed'; allowed: .*seeds"):
        load_plan(write(tmp_path, TINY.replace('name = "tiny"', 'name = "tiny"\nseed = 0')))


def test_a_sampling_experiment_file_is_sent_to_its_own_command(capsys):
    path = ROOT / "experiments" / "sampling.toml"
    with pytest.raises(UsageError) as err:
        load_plan(path)
    assert str(err.value) == (
        f"{path} is a sampling experiment (it has 'masks'); run it with "
        f"'spikeshield sample experiment {path} --out DIR'"
    )
    assert main(["experiment", str(path), "--out", "unused", "--dry-run"]) == 2
    assert "spikeshield sample experiment" in capsys.readouterr().err


def test_a_mode_may_train_its_cells_with_other_settings(tmp_path):
    """``[modes.LABEL] train = {...}`` sets the cells' training settings (e.g. T) over the dataset's."""
    modes = '[modes.t1]\nmode = "bptt"\ntrain = { time_steps = 1 }\n[modes.t2]\nmode = "bptt"\n[train]'
    plan = load_plan(write(tmp_path, TINY.replace("[train]", modes)))
    steps = {c.mode: plan.train_config(c).time_steps for c in plan.cells()}
    assert steps == {"t1": 1, "t2": 2}
    assert plan.modes["t1"] == {"mode": "bptt", "options": {}, "train": {"time_steps": 1}}
    assert "train" not in plan.modes["t2"]  # files without the key keep their fingerprint
    assert shrink(plan, epochs=3).train_config(plan.cells()[0]).epochs == 3


def test_corruptions_is_the_new_name_of_noises(tmp_path):
    old = load_plan(write(tmp_path, TINY))
    new = load_plan(write(tmp_path, TINY.replace("noises =", "corruptions ="), "new.toml"))
    assert new.dataset("digits").evaluate == old.dataset("digits").evaluate


def test_the_shipped_experiment_files_keep_working():
    plan = load_plan(ROOT / "experiments" / "linear_leak.toml")
    assert set(plan.neurons) == {"if", "lif", "linear-lif"} and list(plan.modes) == ["bptt"]
    assert plan.models == ["mlp", "cnn", "vgg11"] and plan.seeds == [0, 1, 2]
    assert {d.name for d in plan.datasets} == {"mnist", "cifar10"}
    assert plan.dataset("cifar10").reduced  # labelled as not paper scale
    assert "6000-image" in plan.dataset("mnist").note  # the free-text line is kept as a note only
    assert len(plan.cells()) == len(plan.selected()) == 54
    # the run folders are the ones the committed results were written to
    cell = plan.cells()[0]
    assert plan.run_dir(Path("out"), cell) == Path("out/runs/mnist/mlp-if-s0")


def test_the_noise_training_files_compare_bptt_at_each_t_with_the_conversions():
    reduced = load_plan(ROOT / "experiments" / "noise_training.toml")
    paper = load_plan(ROOT / "experiments" / "noise_training-paper.toml")
    assert all(d.reduced for d in reduced.datasets) and not any(d.reduced for d in paper.datasets)
    assert len(reduced.cells()) == 3 * 8 * 3 and len(paper.cells()) == 3 * 2 * 11 * 3
    assert [d.name for d in reduced.datasets] == ["mnist", "fashion-mnist", "cifar10"]
    # each dataset runs into its own folder with --dataset: its cells are that dataset's 8 × 3
    assert {c.dataset for c in shrink(reduced, datasets=["cifar10"]).selected()} == {"cifar10"}
    assert len(shrink(reduced, datasets=["fashion-mnist"]).selected()) == 8 * 3
    for plan in (reduced, paper):
        configs = {c.mode: plan.train_config(c) for c in plan.cells()}
        assert {m: c.time_steps for m, c in configs.items() if c.mode == "bptt"} == {
            f"bptt-t{t}": t for t in (1, 2, 4, 8, 16, 32) if f"bptt-t{t}" in configs
        }
        assert {c.neuron for c in configs.values()} == {"if"}  # every variant ends as the same network
        assert {c.mode for c in configs.values()} == {"bptt", "noisy", "ann2snn"}


def test_shrink_selects_cells_changes_budgets_and_records_itself():
    plan = load_plan(ROOT / "experiments" / "linear_leak.toml")
    small = shrink(
        plan, datasets=["mnist"], models=["mlp"], seeds=[0], limit_train=600, limit_test=100, epochs=2
    )
    assert [(c.dataset, c.model, c.neuron, c.seed) for c in small.selected()] == [
        ("mnist", "mlp", n, 0) for n in ("if", "lif", "linear-lif")
    ]
    assert len(small.cells()) == 54  # the grid stays the file's: the summary can show every finished cell
    config = small.train_config(small.selected()[0])
    assert (config.limit_train, config.limit_test, config.epochs) == (600, 100, 2)
    assert small.dataset("mnist").evaluate["limit"] == 100
    assert small.shrunk == dict(
        datasets=["mnist"], models=["mlp"], seeds=[0], limit_train=600, limit_test=100, epochs=2
    )
    assert small.fingerprint() != plan.fingerprint()  # other settings
    assert shrink(plan, seeds=[1]).fingerprint() == plan.fingerprint()  # only another selection
    with pytest.raises(UsageError, match=r"--seeds 7: not in .*linear_leak.toml \(it has: 0, 1, 2\)"):
        shrink(plan, seeds=[7])
    with pytest.raises(UsageError, match="--neurons klif: not in"):
        shrink(plan, neurons=["klif"])
    with pytest.raises(UsageError, match="limit_train must be a positive integer"):
        shrink(plan, limit_train=0)


ONLY = (
    TINY.replace('models = ["mlp"]', 'models = ["mlp", "cnn"]')
    + """
[[only]]
models = ["mlp"]
[[only]]
models = ["cnn"]
neurons = ["linear-lif"]
seeds = [1]
"""
)


def test_only_tables_restrict_the_grid_to_the_cells_they_match(tmp_path):
    plan = load_plan(write(tmp_path, ONLY))
    cells = [(c.model, c.neuron, c.seed) for c in plan.cells()]
    assert cells == [("mlp", "if", 0), ("mlp", "if", 1), ("mlp", "linear-lif", 0), ("mlp", "linear-lif", 1),
                     ("cnn", "linear-lif", 1)]  # fmt: skip
    assert plan.selected() == plan.cells()
    assert plan.only == [{"models": ["mlp"]}, {"models": ["cnn"], "neurons": ["linear-lif"], "seeds": [1]}]
    # a selection (--models / --seeds ...) works within them; the grid stays the file's
    assert [(c.model, c.seed) for c in shrink(plan, models=["cnn"]).selected()] == [("cnn", 1)]
    assert shrink(plan, seeds=[0], models=["cnn"]).selected() == []
    # the tables decide the results: they change the fingerprint; a file without them keeps its own
    full = load_plan(write(tmp_path, ONLY.split("[[only]]")[0], "full.toml"))
    assert len(full.cells()) == 8 and full.fingerprint() != plan.fingerprint()
    assert "only" not in full.describe() and plan.describe()["only"] == plan.only


@pytest.mark.parametrize(
    "change, message",
    [
        (('neurons = ["linear-lif"]', 'neurons = ["linear-lf"]'), r"only\[1\].neurons linear-lf: not in"),
        (("seeds = [1]", "seeds = [5]"), r"only\[1\].seeds 5: not in .*\(it has: 0, 1\)"),
        (("seeds = [1]", "seeds = []"), r"exp\.toml: only\[1\]\.seeds: expected `array` of length >= 1"),
        (("seeds = [1]", "seeds = 1"), r"exp\.toml: only\[1\]\.seeds: expected `array`, got `int`"),
        (("seeds = [1]", "seeds = [-1]"), r"only\[1\]\.seeds\[0\]: expected `int` >= 0"),
        (
            ("seeds = [1]", "seed = [1]"),
            r"only\[1\]: unknown key 'seed'; allowed: datasets, models, modes, neurons, seeds, time_steps",
        ),
        (
            ('[[only]]\nmodels = ["mlp"]', "[[only]]"),
            r"exp\.toml: only\[0\]: empty; name at least one of datasets",
        ),
        (
            ('models = ["mlp"]\n[[only]]', "time_steps = [2]\n[[only]]"),
            r"only\[0\]\.time_steps 2: not in .*\(it has: \)",
        ),
    ],
)
def test_a_bad_only_table_is_one_line_naming_it(tmp_path, change, message):
    with pytest.raises(UsageError, match=message) as err:
        load_plan(write(tmp_path, ONLY.replace(*change)))
    assert "\n" not in str(err.value)


def test_only_must_be_tables(tmp_path):
    text = ONLY.split("[[only]]")[0].replace('name = "tiny"', 'only = ["cnn"]\nname = "tiny"')
    with pytest.raises(UsageError, match=r"exp\.toml: only\[0\]: expected `object`, got `str`"):
        load_plan(write(tmp_path, text))


def test_quick_preset_is_the_run_default_and_takes_the_run_flags():
    raw, _ = preset_data("quick")
    plan = quick_plan()
    assert (
        plan.name == "quick" and plan.models == ["cnn"] and list(plan.neurons) == ["if", "lif", "linear-lif"]
    )
    assert plan.train_config(plan.cells()[0]).epochs == raw["train"]["epochs"] == 30
    changed = quick_plan(
        neurons=["lif", "noisy-if"], seeds=2, surrogate="atan:2", sigmas=[0, 0.2], attacks=[]
    )
    assert changed.seeds == [0, 1]
    assert changed.neurons["lif"]["options"] == {"surrogate": "atan:2"}
    assert changed.neurons["noisy-if"]["options"] == {}  # it takes no surrogate
    protocol = changed.dataset("digits").evaluate
    assert protocol["noises"] == {"gaussian": [0, 0.2]} and protocol["attacks"] == []
    with pytest.raises(UsageError, match="Did you mean 'lif'"):
        quick_plan(neurons=["lfi"])


VALIDATED = (
    TINY.replace("budget = ", "train = { limit_train = 500 }\nbudget = ")
    + """
[evaluate.validation]
attacks = ["pgd"]
gradients = ["bptt"]
limit = 60
"""
)


def test_a_validation_protocol_runs_on_held_out_training_samples_without_checks(tmp_path):
    from spikeshield.experiments.pipeline import cell_evaluations

    plan = load_plan(write(tmp_path, VALIDATED))
    validation = plan.dataset("digits").evaluate["validation"]
    # its own keys override the dataset's protocol, the rest is inherited
    assert (validation["attacks"], validation["gradients"], validation["limit"]) == (["pgd"], ["bptt"], 60)
    assert validation["eps"] == [0.0, 0.1, 0.3] and validation["noises"] == {
        "gaussian": [0.0, 0.3], "salt-pepper": [0.0, 0.1]
    }  # fmt: skip
    settings = cell_evaluations(plan, plan.cells()[0])
    assert [(s.split, s.gradient, s.checks) for s in settings] == [
        ("test", "bptt", True), ("test", "surrogate:atan:2", True), ("holdout", "bptt", False)
    ]  # fmt: skip
    assert settings[2].noises and settings[2].attacks == ("pgd",) and settings[2].limit == 60
    # --limit-test cuts the validation protocol too
    assert shrink(plan, limit_test=10).dataset("digits").evaluate["validation"]["limit"] == 10
    # without a validation table nothing changes: one evaluation per attacker gradient
    plain = load_plan(write(tmp_path, TINY, "plain.toml"))
    assert [s.split for s in cell_evaluations(plain, plain.cells()[0])] == ["test", "test"]


@pytest.mark.parametrize(
    "change, message",
    [
        (("train = { limit_train = 500 }\n", ""), "validation protocol needs train.limit_train"),
        (('attacks = ["pgd"]', 'attacks = ["pgdd"]'), "unknown attack 'pgdd'"),
        (("limit = 60", "limit = 0"), r"exp\.toml: evaluate\.validation\.limit: expected `int` >= 1"),
        (("limit = 60", "limitt = 60"), r"exp\.toml: evaluate\.validation: unknown key 'limitt'"),
        (
            ("limit = 60", "limit = 60\n[evaluate.validation.validation]"),
            r"evaluate\.validation: unknown key 'validation'",  # no validation of its own
        ),
        (
            ('gradients = ["bptt"]\nlimit', 'gradients = ["bptp"]\nlimit'),
            r"evaluate\.validation\.gradients\[0\]",
        ),
        (
            ("limit = 60", "limit = 60\neps = []"),
            r"datasets\.digits\.evaluate\.validation: attacks and suites need eps",
        ),
    ],
)
def test_a_bad_validation_protocol_is_one_line_naming_the_key(tmp_path, change, message):
    with pytest.raises(UsageError, match=message) as err:
        load_plan(write(tmp_path, VALIDATED.replace(*change)))
    assert "\n" not in str(err.value)


def test_the_linear_leak_sweep_file():
    plan = load_plan(ROOT / "experiments" / "linear_leak_sweep.toml")
    leaks = [s["options"]["leak"] for s in plan.neurons.values() if s["neuron"] == "linear-lif"]
    taus = [s["options"]["tau"] for s in plan.neurons.values() if s["neuron"] == "lif"]
    assert leaks == [0.02, 0.05, 0.1, 0.2, 0.3, 0.5] and taus == [1.5, 2.0, 4.0, 8.0]
    assert plan.models == ["mlp", "cnn"] and plan.seeds == [0, 1, 2] and len(plan.cells()) == 50
    # REDUCED: the whole grid on the mlp; on the cnn five neurons at 3 seeds, two at seed 0
    cnn = {(c.neuron, c.seed) for c in plan.cells() if c.model == "cnn"}
    three = ("if", "lif-tau1.5", "lif-tau2", "lif-tau4", "linear-0.5")
    assert cnn == {(n, s) for n in three for s in (0, 1, 2)} | {("linear-0.1", 0), ("linear-0.2", 0)}
    assert "REDUCED (CPU budget)" in plan.source_text.split("[[only]]")[1]
    mnist = plan.dataset("mnist")
    assert mnist.reduced and "REDUCED (CPU budget)" in mnist.note
    assert mnist.train["limit_train"] == 6000 and mnist.evaluate["validation"]["attacks"] == ["pgd"]


def test_the_paper_scale_sweep_differs_only_in_budget(capsys):
    from spikeshield.cli import main

    small = load_plan(ROOT / "experiments" / "linear_leak_sweep.toml")
    paper = load_plan(ROOT / "experiments" / "linear_leak_sweep-paper.toml")
    assert (paper.neurons, paper.models, paper.seeds) == (small.neurons, small.models, small.seeds)
    mnist = paper.dataset("mnist")
    assert not mnist.reduced and mnist.train["limit_train"] == 55000 and mnist.evaluate["limit"] is None
    assert paper.only == [] and len(paper.cells()) == 66  # the whole grid
    assert main(["experiment", str(ROOT / "experiments" / "linear_leak_sweep-paper.toml"), "--dry-run",
                 "--out", "unused"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "66 runs" in out and "validation on held-out training samples under gradient(s): bptt" in out


def test_a_time_steps_list_is_a_grid_axis(tmp_path):
    text = TINY.replace("time_steps = 2", "time_steps = [2, 4]")
    plan = load_plan(write(tmp_path, text))
    cells = plan.cells()
    assert len(cells) == 2 * len(load_plan(write(tmp_path, TINY, "flat.toml")).cells())
    assert [c.time_steps for c in cells[:4]] == [2, 2, 2, 2] and cells[-1].time_steps == 4
    assert [plan.train_config(c).time_steps for c in (cells[0], cells[-1])] == [2, 4]
    assert plan.model_label(cells[0]) == "mlp-T2"
    assert plan.run_dir(Path("out"), cells[-1]) == Path("out/runs/digits/mlp-T4-linear-lif-s1")
    assert plan.describe()["datasets"][0]["time_steps"] == [2, 4]
    # a dataset can give its own axis (or one T) over the [train] table's
    own = text.replace('budget = "1 epoch"', 'budget = "1 epoch"\ntrain = { time_steps = 8 }')
    assert {c.time_steps for c in load_plan(write(tmp_path, own, "own.toml")).cells()} == {None}
    # files without an axis keep their run folders and their fingerprint
    flat = load_plan(write(tmp_path, TINY, "flat.toml"))
    assert "time_steps" not in flat.describe()["datasets"][0]
    assert flat.cells()[0].time_steps is None and flat.model_label(flat.cells()[0]) == "mlp"
    for bad, message in (
        ("[]", r"train\.time_steps: expected `array` of length >= 1"),
        ("[2, 2]", r"train: time_steps must list distinct values, got \[2, 2\]"),
        ("[0, 4]", r"train\.time_steps\[0\]: expected `int` >= 1"),
        ('["2"]', r"train\.time_steps\[0\]: expected `int`, got `str`"),
    ):
        with pytest.raises(UsageError, match=message):
            load_plan(write(tmp_path, TINY.replace("time_steps = 2", f"time_steps = {bad}"), "bad.toml"))


def test_only_tables_name_values_of_a_time_steps_axis(tmp_path):
    text = TINY.replace("time_steps = 2", "time_steps = [2, 4]") + "[[only]]\ntime_steps = [2]\n[[only]]\n"
    plan = load_plan(write(tmp_path, text + 'time_steps = [4]\nneurons = ["if"]\nseeds = [0]\n'))
    assert [(c.time_steps, c.neuron, c.seed) for c in plan.cells()] == [
        (2, "if", 0), (2, "if", 1), (2, "linear-lif", 0), (2, "linear-lif", 1), (4, "if", 0)
    ]  # fmt: skip
    assert plan.only[1] == {"time_steps": [4], "neurons": ["if"], "seeds": [0]}
    with pytest.raises(UsageError, match=r"only\[1\]\.time_steps 8: not in .*\(it has: 2, 4\)"):
        load_plan(write(tmp_path, text + "time_steps = [8]\n", "bad.toml"))


def test_only_tables_may_name_the_rows_of_a_t_axis_as_the_tables_do(tmp_path):
    """``models = ["mlp-T2"]``: the row the report labels mlp-T2 (it used to be refused)."""
    base = TINY.replace("time_steps = 2", "time_steps = [2, 4]")
    base = base.replace('models = ["mlp"]', 'models = ["mlp", "cnn"]')
    plan = load_plan(write(tmp_path, base + '[[only]]\nmodels = ["mlp-T2", "cnn"]\nseeds = [0]\n'))
    same = load_plan(
        write(tmp_path, base + '[[only]]\nmodels = ["cnn"]\nseeds = [0]\n[[only]]\nmodels = ["mlp"]\n'
              'time_steps = [2]\nseeds = [0]\n', "same.toml")
    )  # fmt: skip
    assert set(plan.cells()) == set(same.cells())
    assert sorted({plan.model_label(c) for c in plan.cells()}) == ["cnn-T2", "cnn-T4", "mlp-T2"]
    with pytest.raises(UsageError, match=r"only\[0\]\.models mlp-T8: not in the grid \(models: mlp, cnn; "
                       r"rows of the T axis: mlp-T2, mlp-T4, cnn-T2, cnn-T4\)"):  # fmt: skip
        load_plan(write(tmp_path, base + '[[only]]\nmodels = ["mlp-T8"]\n', "bad.toml"))
    with pytest.raises(UsageError, match=r"only\[0\]: models names rows of the T axis \(mlp-T2\) and time_"):
        load_plan(write(tmp_path, base + '[[only]]\nmodels = ["mlp-T2"]\ntime_steps = [4]\n', "both.toml"))


def test_models_flag_may_name_the_rows_of_a_t_axis_as_the_tables_do(tmp_path, capsys):
    """'experiment --models mlp-T2' (the row the dry run lists) was refused though in the grid."""
    base = TINY.replace("time_steps = 2", "time_steps = [2, 4]")
    path = write(tmp_path, base.replace('models = ["mlp"]', 'models = ["mlp", "cnn"]'))
    plan = load_plan(path)
    chosen = shrink(plan, models=["mlp-T2", "cnn"], seeds=[0])
    assert sorted({chosen.model_label(c) for c in chosen.selected()}) == ["cnn-T2", "cnn-T4", "mlp-T2"]
    every_t = {(c.model, c.time_steps) for c in shrink(plan, models=["mlp"]).selected()}
    assert every_t == {("mlp", 2), ("mlp", 4)}
    assert shrink(plan, models=["mlp-T4"]).fingerprint() == plan.fingerprint()  # only another selection
    with pytest.raises(UsageError) as err:
        shrink(plan, models=["mlp-T8"])
    has = "mlp, cnn, mlp-T2, cnn-T2, mlp-T4, cnn-T4"
    assert str(err.value) == f"--models mlp-T8: not in {path} (it has: {has})"
    dry_run = ["experiment", str(path), "--out", str(tmp_path / "o"), "--dry-run"]
    assert main([*dry_run, "--models", "mlp-T2"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("digits")]
    assert len(listed) == 4 and {line[1] for line in listed} == {"mlp-T2"}


def test_a_training_preset_fills_what_the_file_leaves_open(tmp_path):
    text = TINY.replace("[train]", '[train]\npreset = "plif"').replace("time_steps = 2\n", "")
    plan = load_plan(write(tmp_path, text))
    config = plan.train_config(plan.cells()[0])
    # the PLIF protocol, except what the file sets (epochs) and what the grid sets (the model)
    assert (config.readout, config.loss_name, config.voters) == ("voting", "mse", 10)
    assert (config.optimizer, config.lr, config.schedule, config.batch_size) == ("adam", 1e-3, "cosine", 16)
    assert (config.model, config.model_options, config.epochs, config.time_steps) == (
        "mlp",
        {"hidden": [32]},
        1,
        8,
    )
    assert plan.describe()["datasets"][0]["train"]["preset"] == "plif"
    few = load_plan(write(tmp_path, text.replace('"plif"', '"plif:4"'), "few.toml"))
    assert few.train_config(few.cells()[0]).time_steps == 4
    for change, message in (
        (('"plif"', '"pliff"'), "unknown training preset 'pliff'"),
        (('"plif"', '"plif:two"'), "plif:T takes a whole number"),
        (
            ("epochs = 1", "epochs = 1\nseed = 3"),
            r"train: 'seed' is set per run, by 'seeds'; it is not a shared setting",
        ),
        (("epochs = 1", 'epochs = 1\nmodel = "cnn"'), "'model' is set per run, by 'models'"),
    ):
        with pytest.raises(UsageError, match=message):
            load_plan(write(tmp_path, text.replace(*change), "bad.toml"))


def test_the_klif_experiment_files_parse():
    plan = load_plan(ROOT / "experiments" / "klif.toml")
    assert list(plan.neurons) == ["lif", "plif", "klif"] and plan.seeds == [0, 1, 2]
    assert {d.name for d in plan.datasets} == {"mnist", "fashion-mnist", "nmnist", "cifar10"}
    assert all(d.reduced for d in plan.datasets)  # REDUCED (CPU budget): T cut per dataset
    steps = {d.name: d.time_steps for d in plan.datasets}
    assert steps == {"mnist": [2, 4, 8], "cifar10": [2], "fashion-mnist": [2], "nmnist": [2]}
    assert len(plan.cells()) == (3 + 1 + 1 + 1) * 3 * 3
    assert {plan.run_dir(ROOT, c).name for c in plan.cells() if c.dataset == "nmnist"} == {
        f"plifnet-T2-{n}-s{s}" for n in ("lif", "plif", "klif") for s in (0, 1, 2)
    }
    config = plan.train_config(next(c for c in plan.cells() if c.dataset == "cifar10"))
    assert (config.model, config.readout, config.time_steps) == ("plifnet", "voting", 2)
    # the REDUCED CIFAR-10 budget that leaves the silent start of the rate-MSE loss: lr 5e-3, 4 epochs
    assert (config.lr, config.epochs, config.limit_train) == (5e-3, 4, 3000)
    assert plan.train_config(next(c for c in plan.cells() if c.dataset == "mnist")).lr == 1e-3  # the preset's
    assert config.augment == ["crop:4", "flip"] and config.model_options == {"channels": 16}
    paper = load_plan(ROOT / "experiments" / "klif-paper.toml")
    assert {d.name for d in paper.datasets} == {
        "mnist", "fashion-mnist", "cifar10", "nmnist", "dvs-gesture", "cifar10-dvs"
    }  # fmt: skip
    assert not any(d.reduced for d in paper.datasets)
    gesture = paper.train_config(next(c for c in paper.cells() if c.dataset == "dvs-gesture"))
    assert gesture.model_options.get("blocks") == 5 and gesture.batch_size == 16


def test_model_options_of_a_train_table_add_to_the_files(tmp_path):
    text = TINY.replace(
        'budget = "1 epoch"', 'budget = "1 epoch"\ntrain = { model_options = { batch_norm = false } }'
    )
    plan = load_plan(write(tmp_path, text))
    assert plan.train_config(plan.cells()[0]).model_options == {"hidden": [32], "batch_norm": False}
    bad = TINY.replace('budget = "1 epoch"', 'budget = "1 epoch"\ntrain = { model_options = 5 }')
    with pytest.raises(
        UsageError, match=r"datasets\.digits\.train\.model_options: expected `object`, got `int`"
    ):
        load_plan(write(tmp_path, bad, "bad.toml"))


def test_a_mode_can_be_paired_with_some_neurons_only_and_dlif_needs_no_extra_setting(tmp_path):
    modes = (
        '[neurons.dlif]\nneuron = "dlif"\n[modes.raw]\nmode = "bptt"\n'
        '[modes.at]\nmode = "at"\noptions = { rho = 1.0 }\nneurons = ["dlif", "if"]\n[train]'
    )
    plan = load_plan(write(tmp_path, TINY.replace("[train]", modes).replace("seeds = [0, 1]", "seeds = [0]")))
    pairs = [(c.neuron, c.mode) for c in plan.cells()]
    assert pairs == [("if", "raw"), ("if", "at"), ("linear-lif", "raw"), ("dlif", "raw"), ("dlif", "at")]
    assert plan.modes["at"]["neurons"] == ["dlif", "if"]  # recorded in the plan (and its fingerprint)
    assert plan.train_config(plan.cells()[-1]).neuron == "dlif"


def test_the_rssnn_experiment_files_describe_the_paper_grid():
    cpu = load_plan(ROOT / "experiments" / "rssnn_cpu.toml")
    assert {cpu.variant(c) for c in cpu.cells()} == {
        "lif / at-rho0",
        "dlif / raw",
        "dlif / at-rho0",
        "dlif / at-rho1",
        "dlif / at-rho1-l1",
        "dlif / at-reg-rho1",
    }
    assert cpu.seeds == [0, 1, 2] and all(d.reduced for d in cpu.datasets)
    assert "REDUCED (CPU budget)" in cpu.datasets[0].note
    from spikeshield.experiments.pipeline import cell_evaluations

    paper = load_plan(ROOT / "experiments" / "rssnn_cifar10_paper.toml")
    for plan in (cpu, paper):  # both suites on every cell; no own-surrogate list beside rssnn-standard's
        evaluations = cell_evaluations(plan, plan.cells()[0])
        assert [e.suite for e in evaluations if e.suite] == ["rssnn-standard", "reliable"]
        assert not any(e.gradient == "bptt" and e.attacks for e in evaluations)


def test_a_suite_is_one_more_evaluation_of_every_cell(tmp_path):
    from spikeshield.experiments.pipeline import cell_evaluations

    plain = load_plan(write(tmp_path))
    plan = load_plan(
        write(tmp_path, TINY.replace("limit = 40", "limit = 40\nsuites = { reliable = { steps = 5 } }"))
    )
    assert plan.fingerprint() != plain.fingerprint()
    evaluations = cell_evaluations(plan, plan.cells()[0])
    gradients, suites = evaluations[:2], evaluations[2:]
    assert [s.gradient for s in gradients] == ["bptt", "surrogate:atan:2"]
    (suite,) = suites
    assert suite.suite == "reliable" and suite.attack_options == {"steps": 5} and suite.eps == (0.0, 0.1, 0.3)
    assert suite.limit == 40 and suite.check_samples == 20 and suite.eot_samples is None and not suite.attacks


def test_a_reliable_suite_in_an_experiment_file_sets_its_search_over_a(tmp_path):
    """``assg_rounds`` / ``assg_samples`` set the search (as ``evaluate --assg-rounds``), not the
    attacks; left out, the search is the default one."""
    from spikeshield.experiments.pipeline import cell_evaluations

    def suite(options, name):
        text = TINY.replace("limit = 40", f"limit = 40\nsuites = {{ reliable = {options} }}")
        plan = load_plan(write(tmp_path, text, name))
        return cell_evaluations(plan, plan.cells()[0])[-1]

    searched = suite("{ steps = 5, assg_rounds = 2, assg_samples = 30 }", "searched.toml")
    default = suite("{ steps = 5 }", "default.toml")
    assert searched.attack_options == default.attack_options == {"steps": 5}
    assert (searched.sharpness_search.rounds, searched.sharpness_search.samples) == (2, 30)
    assert (default.sharpness_search.rounds, default.sharpness_search.samples) == (8, 100)
    assert searched.digest() != default.digest()


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((ROOT / "experiments").glob("*.toml")) if not p.name.startswith("sampling")],
    ids=lambda p: p.name,
)
def test_every_committed_experiment_file_is_valid(path):
    plan = load_plan(path)
    assert plan.cells()
