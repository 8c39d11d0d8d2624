"""Train tiny cnn/mlp runs and evaluate them, to compare the pre-merge code (7c680db) with HEAD."""
import hashlib, json, sys
from pathlib import Path
import spikeshield
from spikeshield.training import TrainConfig, train
from spikeshield.experiments.pipeline import EvalSettings, evaluate

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
print("spikeshield from", spikeshield.__file__)
res = {}
for model, neuron, opts in [("cnn", "linear-lif", {"leak": 0.2}), ("cnn", "lif", {"tau": 4.0}), ("mlp", "linear-lif", {"leak": 0.2})]:
    name = f"{model}-{neuron}"
    cfg = TrainConfig(dataset="mnist", model=model, neuron=neuron, neuron_options=opts, time_steps=4, epochs=1,
                      batch_size=64, optimizer="adam", limit_train=640, limit_test=200, seed=0,
                      data_root="/work/wt/issue-23/../shared/data", device="cpu")
    m = train(cfg, out / name, log=lambda _m: None)
    w = hashlib.sha256((out / name / "model.safetensors").read_bytes()).hexdigest()
    s = EvalSettings(attacks=("fgsm", "pgd"), eps=(0.0, 0.1), attack_options={"steps": 3},
                     noises={"gaussian": (0.0, 0.3)}, limit=60, batch_size=64, checks=False)
    r = evaluate(out / name, s, log=lambda _m: None).result
    res[name] = {"test_accuracy": m["test_accuracy"], "train_loss": m["history"][-1]["train_loss"],
                 "weights": w[:16],
                 "records": [(x.get("attack") or x.get("noise"), x.get("eps", x.get("level")), x["accuracy"]) for x in r["records"]],
                 "rate": r.get("firing_rate", {}).get("mean")}
print(json.dumps(res, indent=1))
(out / "result.json").write_text(json.dumps(res, indent=1))
