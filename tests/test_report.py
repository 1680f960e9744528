"""``train.py report``: the files it writes, checkpoint = bundle, the accuracy curve, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import train
from attacks import PGD, AutoAttack
from callbacks import ExplanationMonitor, RobustnessEvaluator, SanityCheck
from datamodules import SyntheticShapes
from export import load_classifier
from report import DEFAULT_METRICS, MASK_METRICS, FILES, default_methods
from tests.recipes import without_monitors

REPO = Path(__file__).resolve().parents[1]
# Cheap settings of the costliest methods, so that the default lists run in seconds.
FAST_METHODS = "{integrated_gradients: {steps: 8}, smoothgrad: {n_samples: 3}}"
TEST_SIZE = 48


def tiny_fit(save_dir: Path) -> list[str]:
    """The ERM synthetic recipe shrunk: a small CNN on 3 classes of 16×16 shapes, 5 short epochs."""
    return [
        "fit",
        "--config",
        str(REPO / "configs" / "synthetic" / "erm.yaml"),
        "--trainer.max_epochs=5",
        "--trainer.limit_val_batches=1",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
        "--model.backbone_kwargs={width: 8, hidden: 32}",
        "--model.eval_attack.init_args.steps=2",
        "--model.optimizer.init_args.lr=0.004",
        "--data.init_args.image_size=16",
        "--data.init_args.num_classes=3",
        "--data.init_args.train_size=640",
        "--data.init_args.val_size=32",
        f"--data.init_args.test_size={TEST_SIZE}",
        "--data.init_args.batch_size=32",
        without_monitors("synthetic/erm"),
    ]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model trained for a few seconds through train.main, a checkpoint of its final state and
    its bundle. (The recipe's checkpoints follow ``val/acc_pgd``, which peaks early for ERM.)"""
    root = tmp_path_factory.mktemp("run")
    cli = train.main(tiny_fit(root))
    checkpoint = root / "final.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    bundle = root / "bundle"
    train.main(["export", "--ckpt_path", str(checkpoint), "--out_dir", str(bundle), "--wandb", "off"])
    return {"checkpoint": checkpoint, "bundle": bundle, "root": root}


def report(*args: str) -> dict[str, Any]:
    train.main(["report", "--no_progress", *args])
    out_dir = Path(args[args.index("--out_dir") + 1])
    return json.loads((out_dir / FILES["json"]).read_text())


@pytest.fixture(scope="module")
def default_report(model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report with the default methods and metrics (cheaper IG and SmoothGrad) on 8 examples."""
    out = tmp_path_factory.mktemp("reports") / "default"
    report(
        "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(out),
        "--num_examples", "8", "--figure_examples", "4", "--method_options", FAST_METHODS,
        "--attack_steps", "5", "--accuracy_examples", "16",
    )  # fmt: skip
    return out


def markdown_table(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and rows of the Markdown table whose first header cell is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return cells(lines[start]), rows


def test_report_writes_the_table_the_figure_and_the_plot(default_report: Path) -> None:
    assert sorted(p.name for p in default_report.iterdir()) == sorted(FILES.values())
    record = json.loads((default_report / FILES["json"]).read_text())
    metrics = [*DEFAULT_METRICS, *MASK_METRICS]  # SyntheticShapes has masks; no spurious patch here
    assert list(record["metrics"]) == list(default_methods())
    for method, row in record["metrics"].items():
        assert list(row) == metrics, method
        for name, cell in row.items():
            assert cell["count"] + cell["undefined"] == 8
            assert cell["value"] is None or isinstance(cell["value"], float)
    # The settings are recorded: the examples, resolved options, the attack.
    settings = record["settings"]
    assert settings["examples"] == 8 and len(settings["figure_examples"]) == 4
    assert settings["methods"]["integrated_gradients"]["steps"] == 8
    assert settings["metrics"]["topk_intersection@pgd"]["eps"] == pytest.approx(0.1)  # the recipe's eval ε
    attacks = settings["accuracy_attacks"]
    assert [a["name"] for a in attacks] == ["pgd5-ce", "pgd5-margin", "pgd5-dlr", "autoattack-fast"]
    assert attacks[-1]["runs"] == ["apgd-ce", "apgd-dlr"]  # 3 classes: untargeted DLR, not APGD-T
    assert record["data"]["split_size"] == TEST_SIZE and record["data"]["config_from"] == "the recorded recipe"
    # The edge control ignores the model: randomising the network leaves it as it is.
    assert record["metrics"]["edge"]["randomisation"]["value"] == pytest.approx(1.0)
    assert len(record["metrics"]["saliency"]["randomisation"]["per_layer"]) == len(record["randomisation_layers"])
    # Default ε grid: the recipe's evaluation ε (0.1) times 0, 1/4, 1/2, 1, 3/2, 2.
    accuracy = record["accuracy"]
    assert accuracy["eps"] == pytest.approx([0.0, 0.025, 0.05, 0.1, 0.15, 0.2])
    assert list(accuracy["by_attack"]) == [a["name"] for a in attacks]
    for i in range(len(accuracy["eps"])):  # the worst case is the minimum over the attacks (per example, so at most)
        assert accuracy["accuracy"][i] <= min(curve[i] for curve in accuracy["by_attack"].values())
        assert accuracy["worst_up_to_eps"][i] <= accuracy["accuracy"][i]

    text = (default_report / FILES["markdown"]).read_text()
    header, rows = markdown_table(text, "method")
    assert [h.split(" ")[0] for h in header[1:]] == metrics
    assert [row[0] for row in rows] == list(default_methods())
    assert rows[list(default_methods()).index("edge")][1 + metrics.index("randomisation")] == "1"
    header, rows = markdown_table(text, "ε")
    assert header[1:] == [*accuracy["by_attack"], "worst case", "worst case over ε' ≤ ε"]
    assert len(rows) == len(record["accuracy"]["eps"])
    assert float(rows[0][1]) == pytest.approx(record["accuracy"]["clean"], abs=1e-3)
    assert FILES["figure"] in text and FILES["plot"] in text

    # The concept figure: the first 4 figure examples, the 3 most relevant channels of each.
    concepts = record["concepts"]
    assert concepts["examples"] == settings["figure_examples"][:4] and concepts["composite"] == "epsilon_plus_flat"
    for channels, relevance, total in zip(concepts["channels"], concepts["relevance"], concepts["layer_relevance"]):
        assert len(set(channels)) == 3 and relevance == sorted(relevance, reverse=True)
    assert FILES["concepts"] in text

    for name in ("figure", "plot", "concepts"):
        data = (default_report / FILES[name]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 300 and height > 200
    # One column per example, one row per method plus the inputs: a tall figure.
    data = (default_report / FILES["figure"]).read_bytes()
    assert int.from_bytes(data[20:24], "big") > int.from_bytes(data[16:20], "big")


def test_checkpoint_and_its_bundle_give_the_same_numbers(model_files: dict[str, Path], tmp_path: Path) -> None:
    common = [
        "--num_examples", "12", "--batch_size", "5", "--methods", "[saliency, smoothgrad, random]",
        "--method_options", "{smoothgrad: {n_samples: 3}}",
        "--metrics", "[topk_intersection@noise, max_sensitivity, infidelity, randomisation, relevance_rank]",
        "--metric_options", "{max_sensitivity: {n_samples: 4}, infidelity: {n_samples: 10}}",
        "--eps", "[0.05, 0.1]", "--attack_steps", "4", "--figure_examples", "3", "--attacks", "[pgd-ce, pgd-margin]",
        "--accuracy_examples", "24",
    ]  # fmt: skip
    from_checkpoint = report("--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "c"), *common)
    from_bundle = report("--bundle", str(model_files["bundle"]), "--out_dir", str(tmp_path / "b"), *common)
    assert from_checkpoint["source"]["kind"] == "checkpoint" and from_bundle["source"]["kind"] == "bundle"
    for key in ("metrics", "accuracy", "settings", "data", "model", "randomisation_layers"):
        assert from_checkpoint[key] == from_bundle[key], key
    # The metrics' random draws and SmoothGrad's noise follow the examples, not the batches:
    # another batch size, the same scores (the random control's own noise is drawn per batch).
    rebatched = report(
        "--bundle", str(model_files["bundle"]), "--out_dir", str(tmp_path / "r"),
        *common[:2], "--batch_size", "12", *common[4:],
    )  # fmt: skip
    for method in ("saliency", "smoothgrad"):
        for name in ("topk_intersection@noise", "max_sensitivity", "infidelity", "randomisation", "relevance_rank"):
            assert rebatched["metrics"][method][name]["value"] == pytest.approx(
                from_bundle["metrics"][method][name]["value"], rel=1e-5, abs=1e-6
            ), (method, name)


def test_accuracy_is_clean_at_zero_and_falls_with_eps(model_files: dict[str, Path], tmp_path: Path) -> None:
    eps = ["0.02", "0.05", "0.1", "0.2", "0.4"]
    record = report(
        "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "acc"),
        "--methods", "[edge]", "--metrics", "[pointing_game]", "--num_examples", "4", "--figure_examples", "2",
        "--accuracy_examples", "40", "--eps", f"[{', '.join(eps)}]", "--attack_steps", "40", "--seed", "3",
        "--attacks", "[pgd-ce, pgd-dlr]",
    )  # fmt: skip
    curve = record["accuracy"]
    # Clean accuracy on the same 40 examples, computed here from the checkpoint and the data.
    loaded = load_classifier(model_files["checkpoint"])
    data = SyntheticShapes(**record["data"]["config"]["init_args"])
    probe = data.probe_batch(40, seed=3, split="test")
    with torch.no_grad():
        clean = (loaded.model(probe.x).argmax(dim=1) == probe.y).float().mean().item()
    assert clean > 0.6, f"the test model did not learn the task (clean accuracy {clean:.2f})"
    assert curve["eps"] == pytest.approx([0.0, *map(float, eps)])
    assert curve["accuracy"][0] == pytest.approx(clean) and curve["clean"] == pytest.approx(clean)
    assert curve["non_increasing"]
    assert all(b <= a for a, b in zip(curve["accuracy"], curve["accuracy"][1:]))
    assert curve["accuracy"][-1] < curve["accuracy"][0]  # ε = 0.4 breaks an ERM model
    assert curve["worst_up_to_eps"] == curve["accuracy"]  # a converged attack loses nothing to smaller ε


def test_data_from_a_recipe_file_and_init_args_override_and_overwrite(model_files: dict[str, Path], tmp_path: Path) -> None:
    recorded = load_classifier(model_files["checkpoint"]).metadata["config"]
    recipe = tmp_path / "recipe.yaml"
    text = recorded.replace(f"test_size: {TEST_SIZE}", "test_size: 20")
    assert text != recorded
    recipe.write_text(text)
    quick = ["--methods", "[saliency]", "--metrics", "[deletion_auc]", "--num_examples", "6", "--figure_examples", "2",
             "--eps", "[0.1]", "--attack_steps", "2"]  # fmt: skip
    from_file = report(
        "--bundle", str(model_files["bundle"]), "--out_dir", str(tmp_path / "f"), "--data", str(recipe), *quick
    )
    assert from_file["data"]["split_size"] == 20 and from_file["data"]["config_from"] == "settings"
    amended = report(
        "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "f"), "--overwrite",
        "--data.init_args.test_size=24", *quick,
    )  # fmt: skip
    assert amended["data"]["split_size"] == 24
    assert json.loads((tmp_path / "f" / FILES["json"]).read_text())["data"]["split_size"] == 24  # replaced
    assert amended["data"]["config"]["init_args"]["image_size"] == 16  # the rest as recorded


@pytest.mark.parametrize(
    "args, option, words",
    [
        (["--ckpt_path", "ROOT/missing.ckpt"], "--ckpt_path", ["does not exist"]),
        (["--bundle", "ROOT"], "--bundle", ["bundle.json"]),
        (["--ckpt_path", "CKPT", "--bundle", "BUNDLE"], "--ckpt_path", ["exactly one"]),
        (["--ckpt_path", "CKPT", "--methods", "[saliency, salincy]"], "--methods", ["salincy", "grad_cam"]),
        (["--ckpt_path", "CKPT", "--metrics", "[deletion_auc, kendal@noise]"], "--metrics", ["kendal@noise"]),
        (["--ckpt_path", "CKPT", "--metrics", "[spurious_share]"], "--metrics", ["spurious_masks"]),
        (["--ckpt_path", "CKPT", "--methods", "[saliency, lrp, occlusion]", "--metrics", "[kendall@topk_attack]"], "--metrics",
         ["through its gradient", "['lrp', 'occlusion']"]),
        (["--ckpt_path", "CKPT", "--method_options", "{score_cam: {layer: net.features.99}}"], "--method_options",
         ["score_cam", "net.features.99"]),
        (["--ckpt_path", "CKPT", "--num_examples", str(TEST_SIZE + 1)], "--num_examples", [str(TEST_SIZE)]),
        (["--ckpt_path", "CKPT", "--accuracy_examples", "0"], "--accuracy_examples", [">= 1"]),
        (["--ckpt_path", "CKPT", "--num_examples", "4"], "--figure_examples", ["<= num_examples"]),
        (["--ckpt_path", "CKPT", "--eps", "[0.1, 1.5]"], "--eps", ["[0, 1]"]),
        (["--ckpt_path", "CKPT", "--method_options", "{saliency: {stps: 3}}"], "--method_options", ["stps"]),
        (["--ckpt_path", "CKPT", "--metric_options", "{deletion_auc: {steps: 0}}"], "--metric_options", ["steps"]),
        (["--ckpt_path", "CKPT", "--metrics", "[deletion_auc]", "--metric_options", "{infidelity: {}}"], "--metric_options", ["infidelity"]),
        (["--ckpt_path", "CKPT", "--data", str(REPO / "configs" / "quickstart.yaml")], "--data", ["match"]),
        (["--ckpt_path", "CKPT", "--data.init_args.test_size=0"], "--data.init_args.test_size", ["must be >= 1"]),
        (["--ckpt_path", "CKPT", "--data.init_args.tst_size=9"], "data", ["tst_size"]),
        (["--ckpt_path", "CKPT", "--attack_steps", "many"], "attack_steps", ["many"]),
        (["--ckpt_path", "CKPT", "--device", "tpu:0"], "--device", ["tpu:0"]),
        # Lists are written as in fit; separate words are refused with the form to use.
        (["--ckpt_path", "CKPT", "--methods", "saliency", "grad_cam"], "--methods", ["--methods '[saliency, grad_cam]'"]),
        (["--ckpt_path", "CKPT", "--eps", "0.1"], "--eps", ["--eps '[0.1]'"]),
        # Options from a --config file are checked as the same options on the command line.
        (["--config", "{ckpt_path: CKPT, methods: [saliency, salincy]}"], "--methods", ["salincy", "grad_cam"]),
        (["--ckpt_path", "CKPT", "--config", "{data: {init_args: {test_size: 0}}}"], "--data.init_args.test_size", [">= 1"]),
        (["--ckpt_path", "CKPT", "--target", "labels"], "target", ["labels"]),
        (["--ckpt_path", "CKPT", "--crp_layer", "net.nowhere"], "crp_layer", ["net.nowhere"]),
        (["--ckpt_path", "CKPT", "--crp_composite", "epsilon_gamma_box"], "crp_composite", ["epsilon_plus_flat"]),
        (["--ckpt_path", "CKPT", "--crp_channels", "1000"], "crp_channels", ["1000"]),
        (["--ckpt_path", "CKPT", "--figure_examples", "2", "--crp_examples", "3"], "crp_examples", ["figure_examples"]),
        (["--ckpt_path", "CKPT", "--config", f"{{data: {REPO / 'configs' / 'quickstart.yaml'}}}"], "--data",
         ["recipe", f"--data {REPO / 'configs' / 'quickstart.yaml'}"]),
    ],
)
def test_bad_input_fails_before_any_work_naming_the_option(
    model_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    option: str,
    words: list[str],
) -> None:
    paths = {"ROOT": model_files["root"], "CKPT": model_files["checkpoint"], "BUNDLE": model_files["bundle"]}
    for placeholder, path in paths.items():
        args = [a.replace(placeholder, str(path)) for a in args]
    out_dir = tmp_path / "out" / "report"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["report", "--no_progress", "--out_dir", str(out_dir), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and option in err and all(w in err for w in words), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the parent or a staging folder


def test_lists_and_a_config_file_in_the_grammar_of_fit_give_the_same_report(
    model_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--methods '[a, b]'``, ``--methods+=a --methods+=b``, a ``--config`` file holding the
    same options (the model and an amended datamodule included) and the file ``--print_config``
    writes are one request: the same report."""
    quick = ["--num_examples", "6", "--figure_examples", "2", "--attack_steps", "2", "--accuracy_examples", "12"]
    options = [
        "--ckpt_path", str(model_files["checkpoint"]), *quick, "--methods", "[saliency, edge]",
        "--metrics", '["deletion_auc", "pointing_game"]', "--eps", "[0.05, 0.1]", "--attacks", "[pgd-ce, pgd-margin]",
        "--data.init_args.test_size=24",
    ]  # fmt: skip
    listed = report(*options, "--out_dir", str(tmp_path / "listed"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["report", *options, "--out_dir", str(tmp_path / "printed"), "--no_progress", "--print_config"])
    assert exit_info.value.code == 0 and not (tmp_path / "printed").exists()
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    reprinted = report("--config", str(printed), "--out_dir", str(tmp_path / "reprinted"))
    appended = report(
        "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "appended"), *quick,
        "--methods+=saliency", "--methods+=edge", "--metrics+=deletion_auc", "--metrics+=pointing_game",
        "--eps+=0.05", "--eps+=0.1", "--attacks+=pgd-ce", "--attacks+=pgd-margin", "--data.init_args.test_size=24",
    )  # fmt: skip
    config = tmp_path / "report.yaml"
    config.write_text(
        f"ckpt_path: {model_files['checkpoint']}\n"
        "methods: [saliency, edge]\nmetrics:\n  - deletion_auc\n  - pointing_game\neps: [0.05, 0.1]\n"
        "attacks: [pgd-ce, pgd-margin]\ndata:\n  init_args:\n    test_size: 24\nprogress: false\n"
    )
    from_config = report("--config", str(config), "--out_dir", str(tmp_path / "config"), *quick)
    assert list(listed["metrics"]) == ["saliency", "edge"] and listed["accuracy"]["eps"] == pytest.approx([0, 0.05, 0.1])
    assert listed["data"]["split_size"] == 24 and listed["data"]["config"]["init_args"]["image_size"] == 16
    for other in (appended, from_config, reprinted):
        for key in ("metrics", "accuracy", "settings", "data", "source"):
            assert other[key] == listed[key], key


def test_existing_out_dir_is_kept_unless_overwrite(default_report: Path, model_files: dict[str, Path]) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in default_report.iterdir()}
    with pytest.raises(SystemExit):
        train.main(["report", "--no_progress", "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(default_report)])
    assert {p.name: p.stat().st_mtime_ns for p in default_report.iterdir()} == before


def test_the_callbacks_and_a_report_give_the_same_numbers_on_the_same_model_and_examples(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """The monitor, the evaluator and the sanity check on the report's own examples (the test split,
    drawn with the report's seed) equal the report's table, curve and randomisation column: both
    call the same evaluation core."""
    n, methods, metrics = 12, ["saliency", "integrated_gradients"], ["topk_intersection@noise", "spearman@noise", "relevance_mass"]
    record = report(
        "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "r"), "--target", "label",
        "--num_examples", str(n), "--accuracy_examples", str(n), "--figure_examples", "2", "--batch_size", "5",
        "--methods", f"[{', '.join(methods)}]", "--method_options", "{integrated_gradients: {steps: 4, rule: riemann_middle}}",
        "--metrics", f"[{', '.join(metrics)}, randomisation]", "--eps", "[0.05, 0.1]",
        "--attacks", "[pgd-ce, pgd-margin, autoattack-fast]", "--attack_steps", "4",
    )  # fmt: skip
    loaded = load_classifier(model_files["checkpoint"])
    probe = SyntheticShapes(**record["data"]["config"]["init_args"]).probe_batch(n, seed=0, split="test")
    monitor = ExplanationMonitor(
        methods=methods, metrics=metrics, method_options={"integrated_gradients": {"steps": 4, "rule": "riemann_middle"}},
        metric_options={"topk_intersection@noise": {"eps": 0.1}, "spearman@noise": {"eps": 0.1}}, probe_size=n, batch_size=5,
    )  # fmt: skip
    attacks = [
        PGD(eps=1.0, step_size=2.5 / 4, steps=4, seed=0),
        PGD(eps=1.0, step_size=2.5 / 4, steps=4, seed=0, loss="margin"),
        AutoAttack(eps=1.0, version="fast", seed=0),
    ]
    evaluator = RobustnessEvaluator(eps=[0.0, 0.05, 0.1], attacks=attacks, probe_size=n, batch_size=5)
    check = SanityCheck(methods=methods, method_options={"integrated_gradients": {"steps": 4, "rule": "riemann_middle"}}, similarities=["spearman"], probe_size=n, batch_size=5)
    for callback in (monitor, evaluator, check):
        callback.use_probe(probe)
    model = loaded.model.eval()
    explained, robust, sanity = monitor.evaluate(model).values, evaluator.evaluate(model), check.evaluate(model)

    for method in methods:
        for metric in metrics:
            assert explained[f"expl/{method}/{metric}"] == record["metrics"][method][metric]["value"], (method, metric)
        assert sanity.similarity[method]["spearman"].tolist() == record["metrics"][method]["randomisation"]["per_layer"]
    curve = record["accuracy"]
    for i, eps in enumerate(curve["eps"]):
        for name, accuracy in curve["by_attack"].items():
            assert robust[f"robust/{name}/acc@eps={eps:g}"] == accuracy[i], (name, eps)
        assert robust[f"robust/acc@eps={eps:g}"] == curve["worst_up_to_eps"][i]


def test_a_saturated_softmax_is_flagged_in_the_report(model_files: dict[str, Path], tmp_path: Path) -> None:
    """The trained model with its logits × 10⁴ (the last layer scaled): the same predictions, a
    softmax at exactly 0 or 1. Cross-entropy PGD stalls; AutoAttack does not; the report warns."""
    checkpoint = torch.load(model_files["checkpoint"], weights_only=True)
    last = [k for k in checkpoint["state_dict"] if k.startswith("model.net.")][-2:]  # the last Linear: weight, bias
    assert [k.rsplit(".", 1)[1] for k in last] == ["weight", "bias"]
    for key in last:
        checkpoint["state_dict"][key] = checkpoint["state_dict"][key] * 1e4
    saturated = tmp_path / "saturated.ckpt"
    torch.save(checkpoint, saturated)
    quick = ["--methods", "[edge]", "--metrics", "[pointing_game]", "--num_examples", "4", "--figure_examples", "2",
             "--eps", "[0.1]", "--accuracy_examples", "24", "--attacks", "[pgd-ce, pgd-margin, autoattack-fast]"]  # fmt: skip
    record = report("--ckpt_path", str(saturated), "--out_dir", str(tmp_path / "s"), *quick)
    by_attack = record["accuracy"]["by_attack"]
    assert by_attack["pgd20-ce"][1] > by_attack["autoattack-fast"][1] + 0.3
    assert by_attack["pgd20-margin"][1] < by_attack["pgd20-ce"][1] - 0.3
    assert len(record["accuracy"]["warnings"]) == 1 and "autoattack-fast" in record["accuracy"]["warnings"][0]
    assert "**Warning: cross-entropy PGD overstates robustness here**" in (tmp_path / "s" / FILES["markdown"]).read_text()
    plain = report("--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "p"), *quick)
    assert plain["accuracy"]["warnings"] == []  # the same model without the scaling: no warning


QUICK = ["--methods", "[saliency]", "--metrics", "[deletion_auc]", "--num_examples", "6", "--figure_examples", "2",
         "--eps", "[0.1]", "--attack_steps", "2"]  # fmt: skip


def _tampered_bundle(bundle: Path, tmp_path: Path) -> Path:
    """A copy of ``bundle`` whose weights are other valid weights: one buffer of the
    normalisation layer changed (the model still loads, at another accuracy)."""
    import shutil

    import safetensors.torch

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    path = copy / "model.safetensors"
    state = safetensors.torch.load_file(path)
    state["normalize.std"] = state["normalize.std"] * 4
    safetensors.torch.save_file(state, path, metadata={"format": "pt"})
    return copy


def test_a_bundle_whose_files_differ_from_bundle_json_is_refused_before_any_work(
    model_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _tampered_bundle(model_files["bundle"], tmp_path)
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    out_dir = tmp_path / "out" / "report"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["report", "--no_progress", "--bundle", str(bundle), "--out_dir", str(out_dir), *QUICK])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --bundle:") and "model.safetensors" in err and "--no-verify" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before


def test_no_verify_reports_on_a_bundle_changed_on_purpose(model_files: dict[str, Path], tmp_path: Path) -> None:
    bundle = _tampered_bundle(model_files["bundle"], tmp_path)
    changed = report("--bundle", str(bundle), "--out_dir", str(tmp_path / "changed"), "--no-verify", *QUICK)
    original = report("--bundle", str(model_files["bundle"]), "--out_dir", str(tmp_path / "original"), *QUICK)
    assert changed["source"]["kind"] == "bundle"
    assert changed["accuracy"]["clean"] != original["accuracy"]["clean"]  # the changed weights were used


def test_a_full_disk_while_writing_a_report_keeps_the_previous_one(
    default_report: Path, model_files: dict[str, Path], monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import os

    import report.output

    before = {p.name: p.read_bytes() for p in default_report.iterdir()}

    def full_disk(*args, **kwargs) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report.output, "accuracy_plot", full_disk)  # the last file of the report
    with pytest.raises(SystemExit) as exit_info:
        train.main(["report", "--no_progress", "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(default_report),
                    "--overwrite", *QUICK])  # fmt: skip
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"error: could not write report {default_report}: No space left on device" in err and "is unchanged" in err
    assert {p.name: p.read_bytes() for p in default_report.iterdir()} == before
    assert [p.name for p in default_report.parent.iterdir()] == [default_report.name]


@pytest.mark.parametrize(
    ("fast", "max_l2", "mean_gap", "max_gap"), [(False, 0.05, 0.03, 0.1), (True, 0.2, 0.15, 0.35)], ids=["default", "fast"]
)
def test_the_report_integrated_gradients_match_a_fine_riemann_sum(
    model_files: dict[str, Path], tmp_path: Path, fast: bool, max_l2: float, mean_gap: float, max_gap: float
) -> None:
    """The report's integrated gradients (32 midpoint points; 8 with --fast) against a 256-point
    midpoint sum on the trained model: the maps' relative L2 distance and the completeness gap
    |Σ Φ − (f(x) − f(x'))| ÷ mean |f(x) − f(x')| stay under the stated bounds (on every example,
    and on average for the gap). Measured: relative L2 ≤ 2 %, gap 1.7 % on average (8.5 % at most)
    for the default; ≤ 14 % and 10 % (29 %) for --fast."""
    from attributions import IntegratedGradients
    from attributions.base import select_logits
    from report.plan import ReportSettings, plan_report

    settings = ReportSettings(
        ckpt_path=str(model_files["checkpoint"]), out_dir=str(tmp_path / "r"), num_examples=16,
        methods=["integrated_gradients"], metrics=["deletion_auc"], fast=fast,
    )  # fmt: skip
    plan = plan_report(settings)
    chosen = plan.methods["integrated_gradients"]
    assert (chosen.rule, chosen.steps) == ("riemann_middle", 8 if fast else 32)
    x = plan.examples.x
    with torch.no_grad():
        target = plan.model(x).argmax(dim=1)
        baseline = chosen.make_baseline(x)
        delta = select_logits(plan.model(x), target) - select_logits(plan.model(baseline), target)
    quick = chosen(plan.model, x, target)
    fine = IntegratedGradients(steps=256, rule="riemann_middle", baseline=chosen.baseline)(plan.model, x, target)
    relative_l2 = (quick - fine).flatten(1).norm(dim=1) / fine.flatten(1).norm(dim=1)
    gap = (quick.flatten(1).sum(dim=1) - delta).abs() / delta.abs().mean()
    assert ((fine.flatten(1).sum(dim=1) - delta).abs() / delta.abs().mean()).max() < 0.02  # the reference is complete
    assert relative_l2.max() < max_l2, relative_l2
    assert gap.mean() < mean_gap and gap.max() < max_gap, gap


def test_fast_writes_every_section_and_says_its_accuracies_are_upper_bounds(model_files: dict[str, Path], tmp_path: Path) -> None:
    """--fast: every file, metric and section of the default report, the profile recorded in
    report.json, the cheaper settings applied, and the statement that no AutoAttack ran."""
    from report.plan import FAST_PROFILE

    out = tmp_path / "fast"
    record = report("--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(out), "--fast", "--num_examples", "6")
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    metrics = [*DEFAULT_METRICS, *MASK_METRICS]
    from attributions import AttributionMethod

    cheap = [n for n in default_methods() if not AttributionMethod.registry.entry(n).cls.costly]
    assert cheap != list(default_methods())  # occlusion and Score-CAM leave a fast report's default list
    assert list(record["metrics"]) == cheap
    assert all(list(row) == metrics for row in record["metrics"].values())
    settings = record["settings"]
    assert settings["fast"] is True and settings["fast_profile"]["attack_steps"] == FAST_PROFILE["attack_steps"] == 10
    assert settings["methods"]["integrated_gradients"]["steps"] == 8
    assert settings["methods"]["smoothgrad"]["n_samples"] == FAST_PROFILE["method_options"]["smoothgrad"]["n_samples"]
    assert settings["metrics"]["infidelity"]["n_samples"] == 10
    assert [a["name"] for a in settings["accuracy_attacks"]] == ["pgd10-ce", "pgd10-margin"]
    assert len(settings["figure_examples"]) == 4
    accuracy = record["accuracy"]
    assert accuracy["eps"] == pytest.approx([0.0, 0.05, 0.1, 0.2])  # the recipe's ε (0.1) times 0, ½, 1, 2
    assert accuracy["examples"] == TEST_SIZE  # the profile's 200, capped by the split
    assert "upper bound" in accuracy["upper_bounds"] and "--fast" in accuracy["upper_bounds"]
    text = (out / FILES["markdown"]).read_text()
    assert "Made with `--fast`" in text and "**Upper bounds only**" in text
    assert markdown_table(text, "method")[1] and len(markdown_table(text, "ε")[1]) == 4
    assert FILES["figure"] in text and FILES["plot"] in text


def test_options_given_explicitly_override_the_fast_profile(model_files: dict[str, Path], tmp_path: Path) -> None:
    """An option on the command line wins over --fast's value; the rest of the profile holds,
    and the default report records fast: false and no upper-bound statement when AutoAttack ran."""
    record = report(
        "--ckpt_path", str(model_files["checkpoint"]), "--out_dir", str(tmp_path / "o"), "--fast",
        "--methods", "[integrated_gradients, smoothgrad]", "--metrics", "[deletion_auc]", "--num_examples", "4",
        "--attack_steps", "3", "--figure_examples", "2", "--accuracy_examples", "8", "--eps", "[0.1]",
        "--method_options.integrated_gradients.steps=12", "--attacks", "[pgd-ce, autoattack-fast]",
    )  # fmt: skip
    settings = record["settings"]
    assert settings["fast"] is True and settings["attack_steps"] == 3
    assert settings["methods"]["integrated_gradients"]["steps"] == 12
    assert settings["methods"]["integrated_gradients"]["rule"] == "riemann_middle"  # the default's rule, not overridden
    assert settings["methods"]["smoothgrad"]["n_samples"] == 5  # the profile's, not overridden
    assert settings["metrics"]["deletion_auc"]["steps"] == 10
    assert [a["name"] for a in settings["accuracy_attacks"]] == ["pgd3-ce", "autoattack-fast"]
    assert len(settings["figure_examples"]) == 2 and record["accuracy"]["examples"] == 8
    assert record["accuracy"]["eps"] == pytest.approx([0.0, 0.1])
    assert record["accuracy"]["upper_bounds"] is None  # AutoAttack ran
