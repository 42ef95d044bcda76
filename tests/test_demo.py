"""`make demo`'s driver, at a small size (one seed): every promised output is written and consistent."""

import json

import pytest
from PIL import Image

from meralign.demo.run import CONFIGURATIONS, DemoArguments, run_demo
from meralign.vocabularies import EVERYDAY_LABELS, SYNTHETIC, SYNTHETIC_TRAINING

OUTPUTS = (
    "results.json",
    "results.md",
    "label_clusters.json",
    "label_clusters.png",
    "model/config.json",
    "model/model.safetensors",
    "model/README.md",
    "model/pipeline_meralign.py",
)
CHECKS = {
    "zero_shot_at_least_2x_chance_and_interval_above_chance",
    "head_beats_linear_zero_shot",
    "in_domain_within_interval_of_paper",
    "affect_spearman_at_least_0.5",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = DemoArguments(
        output_dir=str(out), seeds=[0], tracks_per_dataset=20, clip_seconds=2.0, segment_seconds=1.0, max_epochs=3
    )
    return out, run_demo(args)


def test_demo_writes_every_output(demo):
    out, results = demo
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    curves = sorted(out.glob("training_curves_heldout-*.png"))
    assert [c.name for c in curves] == [f"training_curves_heldout-{name}.png" for name in sorted(SYNTHETIC_TRAINING)]
    for png in [out / "label_clusters.png", *curves]:
        image = Image.open(png).convert("L")
        lo, hi = image.getextrema()
        assert hi - lo > 100  # drawn on, not blank
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))


def test_every_setting_is_scored_by_head_and_linear_in_each_label_space(demo):
    _, results = demo
    tests = {s["test"] for s in results["settings"]}
    assert tests == set(SYNTHETIC_TRAINING) | set(EVERYDAY_LABELS)
    combos = {(s["extra"]["model"], s["extra"]["label_space"]) for s in results["settings"]}
    assert combos == {(model, space) for model in ("head", "linear") for space in CONFIGURATIONS}
    for setting in results["settings"]:
        assert 0 < setting["chance"]["segment"]["macro_f1"]["random_topk"] < 1
        low, high = setting["intervals"]["segment"]["macro_f1"]
        assert 0 <= low <= setting["metrics"]["segment"]["macro_f1"] <= high <= 1


def test_report_rows_carry_interval_chance_baselines_and_the_worst_vocabulary(demo):
    out, results = demo
    assert "RANDOM weights" in results["tower"]
    # 3 held-out runs: each scores its held-out dataset and the three everyday vocabularies (zero-shot) and its two
    # training datasets (in-domain)
    assert len(results["rows"]) == 3 * (1 + len(EVERYDAY_LABELS) + 2)
    for row in results["rows"]:
        assert row["head_interval"][0] <= row["head_first_seed"] <= row["head_interval"][1]
        assert row["linear"]["n"] == row["paper"]["n"] == 1
    ratios = [v["head"]["mean"] / v["chance"]["mean"] for v in results["zero_shot_vocabularies"]]
    assert ratios == sorted(ratios)  # worst first
    assert {v["vocabulary"] for v in results["zero_shot_vocabularies"]} == set(SYNTHETIC_TRAINING) | set(
        EVERYDAY_LABELS
    )
    assert set(results["checks"]) == CHECKS
    text = (out / "results.md").read_text()
    assert "Chance: random top-k" in text and "worst first" in text and results["determinism"] in text


def test_affect_and_the_pipeline_example(demo):
    _, results = demo
    for axis in ("valence", "arousal"):
        first = results["affect"]["first_seed"][axis]
        assert -1 <= first["interval"][0] <= first["spearman"] <= first["interval"][1] <= 1
    example = results["pipeline_example"]
    assert len(example["top3"]) == 3 and not example["audio"].startswith("/")
    assert [t["score"] for t in example["top3"]] == sorted((t["score"] for t in example["top3"]), reverse=True)
    assert {t["label"] for t in example["top3"]} <= set(SYNTHETIC["everyday-1"].labels)
    assert all(isinstance(example[axis], float) and abs(example[axis]) < 10 for axis in ("valence", "arousal"))
