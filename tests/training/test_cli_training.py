"""The training CLI end to end on a real (small) feature cache: kill + resume, two processes, export.

The cache comes from the synthetic corpus through the tiny random tower, so these tests exercise the same
path as `make demo`, only smaller.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO_ROOT, accelerate_launch

DATASETS = ("synth-jamendo", "synth-cal500")
# The paper's configuration: its bare labels keep every subprocess from building the default label space again
# (tested elsewhere), and on this 20-track corpus its regulariser weight learns in fewer epochs than the default
# 0.5, which was chosen on the demo's 200-track corpus.
# fmt: off
FIT_FLAGS = ["--batch_size", "16", "--learning_rate", "3e-3", "--head_hidden_size", "64", "--head_dropout", "0.0",
             "--patience", "50", "--log_with", "none", "--progress", "false", "--label_space", "paper",
             "--alpha", "2.5", "--train_datasets", *DATASETS]
# fmt: on


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic corpus, the tiny base model saved as a folder, and its feature cache."""
    from meralign.data.synthetic.corpus import generate_corpus
    from meralign.features.extract import extract_features
    from meralign.publish.folder import save_model_folder
    from meralign.testing import build_tiny_model
    from meralign.vocabularies import SYNTHETIC

    root = tmp_path_factory.mktemp("cli")
    corpus = generate_corpus(root / "corpus", seed=1, tracks_per_dataset=20, seconds=2.0, datasets=DATASETS)
    model = build_tiny_model(seed=0, segment_seconds=1.0)
    save_model_folder(model, root / "base")
    tracks = [t for name in DATASETS for t in corpus[name]]
    extract_features(model, tracks, root / "cache", batch_size=16, vocabularies=SYNTHETIC, progress=False)
    return {"root": root, "corpus": corpus}


# `train.py fit` with a pause after every epoch (a Trainer callback), so a test can kill it mid-run.
SLOW_FIT = """
import sys, time
from meralign.arguments import parse_args
from meralign.training.arguments import FitArguments
from meralign.training.trainer import fit

(args,) = parse_args(FitArguments, sys.argv[1:])
fit(args, callbacks=[lambda record: time.sleep(3)])
"""


def _env(**extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.update(extra)
    return env


def _fit_cmd(cache, out, epochs, *extra):
    return [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "fit",
        "--cache_dir",
        str(cache),
        "--output_dir",
        str(out),
        "--max_epochs",
        str(epochs),
        *FIT_FLAGS,
        *extra,
    ]


def _records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]


def test_fit_killed_mid_run_resumes_to_the_same_result(workspace):
    root = workspace["root"]
    straight = subprocess.run(
        _fit_cmd(root / "cache", root / "straight", 5), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    run = root / "killed"
    slow = [sys.executable, "-c", SLOW_FIT, *_fit_cmd(root / "cache", run, 5)[3:]]
    proc = subprocess.Popen(slow, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    state = run / "trainer_state.json"
    deadline = time.time() + 180
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["epoch"] >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_before = json.loads(state.read_text())["epoch"]
    assert 2 <= epochs_before < 5, "the run must be killed mid-way"

    resumed = subprocess.run(
        _fit_cmd(root / "cache", run, 5, "--resume", "true"), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from epoch" in resumed.stdout
    a, b = _records(root / "straight"), _records(run)
    assert [r["epoch"] for r in b] == list(range(5))
    for ra, rb in zip(a, b):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-6)
        assert ra["val_macro_f1"] == pytest.approx(rb["val_macro_f1"], abs=1e-9)
    head_a = json.loads((root / "straight" / "head_config.json").read_text())
    head_b = json.loads((run / "head_config.json").read_text())
    assert head_a["logit_scale"] == pytest.approx(head_b["logit_scale"], rel=1e-6)


@pytest.mark.slow
def test_fit_with_two_processes(workspace):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU (torchrun + gloo) trains a usable head.

    (`--cpu --num_processes 2` starts a single process in accelerate 1.x; --multi_gpu with no GPU launches
    the processes through torchrun and meralign builds a CPU accelerator for them.)
    """
    from meralign.evaluation.scoring import score_split
    from meralign.features.datasets import CacheDatasets
    from meralign.head import load_head
    from meralign.vocabularies import SYNTHETIC

    root = workspace["root"]
    cmd = accelerate_launch(2, *_fit_cmd(root / "cache", root / "ddp", 6)[1:])
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(_records(root / "ddp")) == 6  # one log line per epoch: only the main process writes
    head, saved = load_head(root / "ddp")
    data = CacheDatasets(root / "cache").get("synth-jamendo", SYNTHETIC["synth-jamendo"], saved["pooling"])
    result = score_split(head, saved, data, "all")
    chance = result["chance"]["segment"]["random_topk"]["macro_f1"]
    assert result["segment"]["macro_f1"] > 1.5 * chance


def test_export_then_fresh_process_pipeline_matches_in_process(workspace, run_isolated):
    from meralign.publish.export import assemble, export_model, load_base

    root = workspace["root"]
    head_dir = root / "straight" if (root / "straight" / "head_config.json").exists() else None
    if head_dir is None:
        head_dir = root / "export_fit"
        done = subprocess.run(
            _fit_cmd(root / "cache", head_dir, 2), env=_env(), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
    folder = export_model(head_dir, root / "exported", base_model=str(root / "base"))
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["custom_pipelines"]["zero-shot-music-emotion"]["impl"]
        == "pipeline_meralign.ZeroShotMusicEmotionPipeline"
    )
    assert not any(
        str(v).startswith("/") for v in (config.get("text_name_or_path"), config["text_config"].get("_name_or_path"))
    )
    assert (folder / "README.md").read_text().startswith("---")
    onnx_files = {"audio_model.onnx", "text_model.onnx", "meralign_onnx.json"}
    assert onnx_files <= {path.name for path in (folder / "onnx").iterdir()}
    assert (folder / "onnx_meralign.py").is_file()  # the ONNX backend ships with the remote code

    clip = str(workspace["corpus"]["synth-cal500"][0].audio)
    labels = ["cheerful", "sad", "calm", "aggressive"]
    model = assemble(load_base(str(root / "base")), head_dir)
    from transformers import pipeline

    import pipeline_meralign  # noqa: F401  (registers the task in this process)
    from modeling_meralign import build_processors

    feature_extractor, tokenizer = build_processors(model.config, str(folder))
    local = pipeline("zero-shot-music-emotion", model=model, tokenizer=tokenizer, feature_extractor=feature_extractor)
    expected = {r["label"]: r["score"] for r in local(clip, candidate_labels=labels)}
    out = run_isolated(f"""
        import json
        from transformers import pipeline
        for backend in ("torch", "onnx"):
            clf = pipeline("zero-shot-music-emotion", model={str(folder)!r}, trust_remote_code=True, backend=backend)
            print(json.dumps(clf({clip!r}, candidate_labels={labels!r})))
    """)
    for line, tolerance in zip(out.stdout.strip().splitlines()[-2:], (1e-5, 1e-4)):
        fresh = {r["label"]: r["score"] for r in json.loads(line)}
        assert fresh.keys() == expected.keys()
        for label in labels:
            assert fresh[label] == pytest.approx(expected[label], abs=tolerance)
        assert np.isclose(sum(fresh.values()), 1.0)
