"""`make demo`'s driver, at a small size: every promised output is written and consistent."""

import json

import pytest
from PIL import Image

from meralign.demo import DemoArguments, run_demo

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    args = DemoArguments(
        output_dir=str(out), tracks_per_dataset=20, clip_seconds=2.0, segment_seconds=1.0, max_epochs=3
    )
    return out, run_demo(args)


def test_demo_writes_every_output(demo):
    out, results = demo
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    curves = sorted(out.glob("training_curves_heldout-*.png"))
    assert len(curves) == 3
    for png in [out / "label_clusters.png", *curves]:
        image = Image.open(png).convert("L")
        lo, hi = image.getextrema()
        assert hi - lo > 100  # drawn on, not blank
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))


def test_demo_results_carry_chance_baselines_and_the_tower_notice(demo):
    out, results = demo
    assert "RANDOM weights" in results["tower"]
    kinds = {(s["test"], s["kind"]) for s in results["settings"]}
    assert {"synth-jamendo", "synth-cal500", "synth-emotify", "synth-zeroshot"} == {t for t, _ in kinds}
    for setting in results["settings"]:
        assert 0 < setting["chance"]["segment"]["macro_f1"]["random_topk"] < 1
        assert 0 <= setting["metrics"]["segment"]["macro_f1"] <= 1
    example = results["pipeline_example"]
    assert len(example["top3"]) == 3 and not example["audio"].startswith("/")
    assert "chance: random top-k" in (out / "results.md").read_text()
