"""Model folder validation (newstagger.model_folder): every tampered folder is refused on load with an error
naming the file and the key, before any weights or code are touched."""

import json
import shutil

import pytest

from newstagger.model_folder import ModelFolderError, read_model_folder
from newstagger.predictor import Predictor


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy, ignore=shutil.ignore_patterns("onnx"))
    return copy


def edit_json(path, **changes):
    values = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    path.write_text(json.dumps(values))


def test_a_good_folder_reads(folder):
    config = read_model_folder(folder)
    assert config.labels == ["diplomacy", "sanctions", "press_freedom"]
    assert set(config.topic_thresholds) == set(config.labels)


@pytest.mark.parametrize("changes, message", [
    ({"topic_thresholds": {"diplomacy": 1.5}}, r"config.json: topic_thresholds.diplomacy: 1.5 is not a number in \[0, 1\]"),
    ({"topic_thresholds": {"diplomacy": "0.4"}}, "topic_thresholds.diplomacy: '0.4' is not a number"),
    ({"topic_thresholds": {"diplomacy": float("nan")}}, "topic_thresholds.diplomacy: nan is not a number"),
    ({"topic_thresholds": {"elections": 0.5}}, "topic_thresholds.elections: not one of the labels"),
    ({"boilerplate_threshold": -0.1}, "boilerplate_threshold: -0.1 is not a number"),
    ({"boilerplate_threshold": True}, "boilerplate_threshold: True is not a number"),
    ({"labels": ["a", "b", "a"]}, "labels: duplicate label 'a'"),
    ({"labels": []}, "labels: expected a non-empty list"),
    ({"labels": "diplomacy"}, "labels: expected a non-empty list"),
    ({"max_paragraph_tokens": 1}, r"max_paragraph_tokens: 1 is not a whole number in \[8, "),
    ({"max_paragraph_tokens": 100000}, "max_paragraph_tokens: 100000 is not a whole number"),
    ({"auto_map": {"AutoModel": "evil.Model"}}, "config.json: auto_map: custom code is not supported"),
    ({"model_type": None}, "config.json: model_type: None, expected 'newstagger'"),
])
def test_a_bad_config_is_refused_naming_file_and_key(folder, changes, message):
    edit_json(folder / "config.json", **changes)
    with pytest.raises(ModelFolderError, match=message):
        read_model_folder(folder)
    with pytest.raises(ModelFolderError, match=message):  # the Predictor loads through the same check
        Predictor.from_pretrained(folder)


def test_weights_only_from_safetensors(folder):
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")  # a pickle is never loaded
    with pytest.raises(ModelFolderError, match="model.safetensors: missing: .*safetensors only.*never loaded"):
        Predictor.from_pretrained(folder)


def test_the_tokenizer_must_be_there_and_match_the_encoder(folder):
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {k: v for k, v in list(tokenizer["model"]["vocab"].items())[:5]}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ModelFolderError, match=r"tokenizer.json: vocabulary: \d+ tokens, but the encoder.s embedding table has 30522"):
        read_model_folder(folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFolderError, match="tokenizer.json: missing"):
        read_model_folder(folder)


def test_a_tokenizer_with_custom_code_is_refused_without_reading_stdin(folder, monkeypatch):
    edit_json(folder / "tokenizer_config.json", auto_map={"AutoTokenizer": ["evil.Tok", None]})
    monkeypatch.setattr("sys.stdin", None)  # any prompt would fail here instead of reading articles
    with pytest.raises(ModelFolderError, match="tokenizer_config.json: auto_map: custom code"):
        Predictor.from_pretrained(folder)


def test_not_json_and_not_a_folder(folder, tmp_path):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="config.json: not valid JSON"):
        read_model_folder(folder)
    with pytest.raises(ModelFolderError, match="no such model folder"):
        read_model_folder(tmp_path / "absent")


def test_label_maps_contradicting_labels_are_refused(folder):
    edit_json(folder / "config.json", id2label={"0": "sanctions", "1": "diplomacy", "2": "press_freedom"})
    with pytest.raises(ModelFolderError, match=r"config.json: id2label: .* does not match labels \['diplomacy'"):
        Predictor.from_pretrained(folder)
    edit_json(folder / "config.json", id2label={"0": "diplomacy", "1": "sanctions", "2": "press_freedom"},
              label2id={"diplomacy": 1, "sanctions": 0, "press_freedom": 2})
    with pytest.raises(ModelFolderError, match="config.json: label2id: .* does not match labels"):
        read_model_folder(folder)


@pytest.mark.parametrize("key, value, message", [
    ("num_hidden_layers", 3, r"config.json: encoder.num_hidden_layers: 3, but model.safetensors holds 2 encoder layers"),
    ("num_hidden_layers", 1, r"encoder.num_hidden_layers: 1, but model.safetensors holds 2"),
    ("hidden_size", 64, r"config.json: encoder: vocab_size 30522 and hidden_size 64, but model.safetensors holds "
                        r"encoder.embeddings.word_embeddings.weight of shape \[30522, 32\]"),
    ("intermediate_size", "64", r"config.json: encoder.intermediate_size: expected a whole number, got '64'"),
    ("hidden_size", 32.0, r"config.json: encoder.hidden_size: expected a whole number, got 32.0"),
    ("intermediate_size", 48, r"config.json: encoder: intermediate_size 48, but model.safetensors holds "
                              r"encoder.encoder.layer.0.intermediate.dense.weight of shape \[64, 32\]"),
])
def test_an_encoder_config_that_does_not_describe_the_weights_is_refused_by_every_backend(folder, key, value, message):
    encoder = json.loads((folder / "config.json").read_text())["encoder"]
    edit_json(folder / "config.json", encoder={**encoder, key: value})
    with pytest.raises(ModelFolderError, match=message):  # torch-free: the onnx backend checks this too
        read_model_folder(folder)
    with pytest.raises(ModelFolderError, match=message):
        Predictor.from_pretrained(folder, backend="onnx")


@pytest.mark.parametrize("change, message", [
    ({"max_position_embeddings": 300}, r"mismatched keys: encoder.embeddings.position_embeddings.weight "
                                        r"\(\[512, 32\] in the file, \[300, 32\] in config.json\)"),
    ({"context_layers": 2}, r"missing keys: "),
    ({"relation_features": False}, r"unexpected keys: relation.bias, relation.weight"),
])
def test_weights_that_do_not_fill_the_model_exactly_are_refused_on_load(folder, capfd, change, message):
    """What the header check cannot see (position embeddings, the context layer, the heads) transformers
    would only log, leaving freshly initialised tensors: the torch load refuses it in one line, without
    transformers' report."""
    config = json.loads((folder / "config.json").read_text())
    if "max_position_embeddings" in change:
        change = {"encoder": {**config["encoder"], **change}}
    edit_json(folder / "config.json", **change)
    read_model_folder(folder)  # shapes the header check does not know
    capfd.readouterr()
    with pytest.raises(ModelFolderError, match=r"model.safetensors: does not match config.json: " + message):
        Predictor.from_pretrained(folder)
    assert "LOAD REPORT" not in capfd.readouterr().err


def test_a_truncated_weights_file_is_refused(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFolderError, match="model.safetensors: cannot be read: truncated"):
        read_model_folder(folder)


@pytest.mark.parametrize("changes, message", [
    ({"topic_thresholds": None}, "config.json: topic_thresholds: missing"),
    ({"topic_thresholds": {"diplomacy": 0.4, "sanctions": 0.5}}, "config.json: topic_thresholds.press_freedom: missing"),
    ({"boilerplate_threshold": None}, "config.json: boilerplate_threshold: missing"),
])
def test_a_missing_threshold_is_refused_not_taken_as_one_half(folder, changes, message):
    edit_json(folder / "config.json", **changes)
    with pytest.raises(ModelFolderError, match=message):
        Predictor.from_pretrained(folder)


@pytest.mark.parametrize("changes, message", [
    ({"boilerplate_transition_penalty": -1}, "config.json: boilerplate_transition_penalty: -1 is not a finite number >= 0"),
    ({"boilerplate_transition_penalty": "2"}, "config.json: boilerplate_transition_penalty: '2' is not a finite number"),
    ({"boilerplate_transition_penalty": True}, "config.json: boilerplate_transition_penalty: True is not a finite"),
    ({"boilerplate_transition_penalty": float("inf")}, "config.json: boilerplate_transition_penalty: inf is not a finite"),
    ({"boilerplate_transition_penalty": 2.0, "boilerplate_threshold": 1.0},
     r"config.json: boilerplate_threshold: 1.0 must be inside \(0, 1\) when boilerplate_transition_penalty is over 0"),
])
def test_a_bad_transition_penalty_is_refused(folder, changes, message):
    edit_json(folder / "config.json", **changes)
    with pytest.raises(ModelFolderError, match=message):
        Predictor.from_pretrained(folder)


def test_a_folder_saved_before_decoding_decides_each_paragraph_on_its_own(folder):
    """Folders written before the transition penalty existed have none: 0, the per-paragraph threshold."""
    edit_json(folder / "config.json", boilerplate_transition_penalty=None)
    assert "boilerplate_transition_penalty" not in json.loads((folder / "config.json").read_text())
    predictor = Predictor.from_pretrained(folder)
    assert predictor.boilerplate_transition_penalty == 0.0
    result = predictor.predict(["Ministers met in Oslo.", "Subscribe to our newsletter.", "They signed."])
    assert result.boilerplate == [s >= predictor.boilerplate_threshold for s in result.paragraph_scores]
