"""Typed configuration: YAML plus overrides, checked by HfArgumentParser; TrainingArguments options."""

import re

import pytest

from newstagger.config import ConfigError, load_config


@pytest.fixture()
def default(root):
    return root / "configs" / "default.yaml"


def test_overrides_are_typed(default):
    config = load_config(default, ["learning_rate=1e-4", "epochs=2", "--batch_size", "4", "--augment=false",
                                   "labels=diplomacy", "test_file=null"])
    assert config.learning_rate == 1e-4 and isinstance(config.learning_rate, float)
    assert config.epochs == 2.0 and config.batch_size == 4 and config.augment is False
    assert config.labels == ["diplomacy"] and config.test_file is None
    assert load_config(default, ["labels=a,b"]).labels == ["a", "b"]
    assert load_config(default, ["labels=[a, b, c]"]).labels == ["a", "b", "c"]
    assert load_config(default, ["labels=[]"]).labels == []  # inferred from the training data


@pytest.mark.parametrize("override, words", [
    ("epochs=abc", "config key epochs: invalid float value: 'abc'"),
    ("batch_size=2.5", "config key batch_size: invalid int value: '2.5'"),
    ("augment=maybe", "config key augment"),
    ("epochs=null", "config key epochs: null is not allowed (expected a number)"),
    ("batch_size=null", "config key batch_size: null is not allowed (expected a whole number)"),
    ("augment=null", "config key augment: null is not allowed (expected true or false)"),
    ("random_encoder=3", "config key random_encoder: expected a mapping"),
    ("nonsense=1", "override: unknown config keys: nonsense (`newstagger train --help` lists the keys"),
    ("lables=a", "override: unknown config keys: lables (did you mean labels?) ("),
    ("trainer.gradient_acumulation_steps=2", "unknown TrainingArguments options: gradient_acumulation_steps "
                                             "(did you mean gradient_accumulation_steps?)"),
    ("trainer.not_an_option=1", "unknown TrainingArguments options: not_an_option"),
    # a dotted key: a misspelt trainer group, a plain key given sub-keys, the other mapping given one key
    ("trainr.seed=3", "unknown config keys: trainr.seed (did you mean trainer.seed?)"),
    ("augment.probability=0.5", "unknown config keys: augment.probability (augment takes one value, not sub-keys"),
    ("random_encoder.hidden_size=32", "random_encoder.hidden_size (random_encoder is set as one mapping: "
                                      "random_encoder={hidden_size: ...})"),
    ("trainer.gradient_accumulation_steps=two", "config key gradient_accumulation_steps: invalid int value"),
    ("just-a-word", "is not key=value"),
    ("labels=diplomacy,sanctions,diplomacy", "config key labels: 'diplomacy' is given twice"),
    ("labels=[diplomacy, '  ']", "config key labels: an empty label name"),
    ("title_echo_probability=1.5", "config key title_echo_probability: must be in [0, 1], not 1.5"),
    ("attention_dropout=-0.1", "config key attention_dropout: must be in [0, 1], not -0.1"),
    ("encoder_mode=froze", "config key encoder_mode: 'froze' is not one of finetune, frozen"),
    ("topic_pooling=max", "config key topic_pooling: 'max' is not one of top2, attention, mean"),
    ("problem_type=single", "config key problem_type: 'single' is not one of multi_label_classification"),
])
def test_wrong_overrides_name_the_key_value_and_type(default, override, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(default, [override])


def test_a_bad_value_names_where_it_came_from(default, tmp_path):
    """A value of the wrong type or range names its YAML file, or "override" for the command line's."""
    (tmp_path / "c.yaml").write_text(default.read_text() + "epochs: abc\ndropout: 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'c.yaml'}: config key epochs: invalid float")):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=re.escape("override: config key dropout: must be in [0, 1], not 3.0")):
        load_config(default, ["dropout=3"])
    assert load_config(tmp_path / "c.yaml", ["epochs=2", "dropout=0.2"]).epochs == 2.0  # the override wins


def test_attention_dropout_may_be_null_for_the_base_models_own(default):
    assert load_config(default, ["attention_dropout=null"]).attention_dropout is None
    assert load_config(default, ["attention_dropout=0.05"]).attention_dropout == 0.05


def test_any_training_arguments_option_reaches_the_trainer(default, tmp_path):
    (tmp_path / "c.yaml").write_text(default.read_text() + "trainer:\n  gradient_accumulation_steps: 2\n")
    config = load_config(tmp_path / "c.yaml", ["trainer.lr_scheduler_type=cosine"])
    assert config.trainer == {"gradient_accumulation_steps": 2, "lr_scheduler_type": "cosine"}


def test_model_hyperparameters_come_from_one_place(default):
    from newstagger.model import NewsTaggerConfig

    kwargs = load_config(default, ["dropout=0.2", "topic_pooling=attention"]).model_kwargs()
    assert kwargs["dropout"] == 0.2 and kwargs["topic_pooling"] == "attention" and "learning_rate" not in kwargs
    config = NewsTaggerConfig(**kwargs)
    assert config.dropout == 0.2 and config.labels == ["diplomacy", "sanctions", "press_freedom"]


def test_unreadable_config_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("epochs: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: cannot read"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_an_unknown_key_is_blamed_on_where_it_was_written(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 1\nlabelz: [a]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config keys: labelz"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("epochs: 1\n")
    with pytest.raises(ConfigError, match=r"^override: unknown config keys: epoch "):
        load_config(tmp_path / "c.yaml", ["epoch=2"])


def test_the_default_config_ships_inside_the_package(default):
    """`newstagger train` without --config (an installed wheel has no configs/ folder) reads the packaged
    default, which is the very file configs/default.yaml of a checkout names."""
    from newstagger.config import DEFAULT_CONFIG

    assert DEFAULT_CONFIG.is_file() and DEFAULT_CONFIG.parent.parent.name == "newstagger"
    assert DEFAULT_CONFIG.resolve() == default.resolve()
    assert load_config() == load_config(default)
    assert load_config().num_threads == 2 and load_config().epochs == 3


def test_the_fingerprint_names_the_model_not_where_it_is_written(default):
    """A model trained into runs/exp1 and moved to runs/default is what `train --skip-if-trained` would make
    there; any setting that changes training changes the fingerprint."""
    config = load_config(default)
    moved = load_config(default, ["output_dir=runs/exp1"])
    assert moved.fingerprint(["abc"]) == config.fingerprint(["abc"])
    kept = load_config(default, ["keep_checkpoints=true"])  # what is left beside the model is not the model
    assert kept.keep_checkpoints and kept.fingerprint(["abc"]) == config.fingerprint(["abc"])
    # a lever added later leaves the models trained before it alone while it is off
    for off, on in (("caption_credit_probability=0", "caption_credit_probability=0.2"),
                    ("freeze_embeddings=false", "freeze_embeddings=true"),
                    ("attention_dropout=null", "attention_dropout=0")):
        assert load_config(default, [off]).fingerprint(["abc"]) == config.fingerprint(["abc"]), off
        assert load_config(default, [on]).fingerprint(["abc"]) != config.fingerprint(["abc"]), on
    assert load_config(default, ["oversample_rare_structures=20"]).fingerprint(["abc"]) != config.fingerprint(["abc"])
    # briefs are on in the default: off is another model
    assert config.brief_probability == 0.15
    assert load_config(default, ["brief_probability=0"]).fingerprint(["abc"]) != config.fingerprint(["abc"])
    assert config.fingerprint(["abd"]) != config.fingerprint(["abc"])  # other data


def test_the_vector_encoder_changes_the_fingerprint_only_where_vectors_are_cached(default):
    """vector_encoder decides the fast mode's vectors; full fine-tuning never reads it, so it leaves the
    fingerprint (and runs trained before the key existed) alone there."""
    finetune = load_config(default)
    assert load_config(default, ["vector_encoder=torch"]).fingerprint(["abc"]) == finetune.fingerprint(["abc"])
    frozen = load_config(default, ["encoder_mode=frozen"])
    assert frozen.vector_encoder == "int8"  # the fast mode's default: fast on a CPU, F1 kept (README)
    assert load_config(default, ["encoder_mode=frozen", "vector_encoder=torch"]).fingerprint(["abc"]) != \
        frozen.fingerprint(["abc"])
    with pytest.raises(ConfigError, match="vector_encoder"):
        load_config(default, ["vector_encoder=int4"])


def test_choices_are_words_in_any_case(default):
    config = load_config(default, ["vector_encoder=INT8", "encoder_mode= Frozen", "topic_pooling=Top2"])
    assert (config.vector_encoder, config.encoder_mode, config.topic_pooling) == ("int8", "frozen", "top2")
    with pytest.raises(ConfigError, match="config key vector_encoder: 'int4' is not one of torch, int8"):
        load_config(default, ["vector_encoder=INT4"])


def test_a_key_given_twice_on_a_command_line_is_refused_naming_both(default):
    """The CLI (once=True) refuses it; a script layering its defaults and a user's overrides gets the last."""
    with pytest.raises(ConfigError, match=re.escape("override: config key epochs is given twice (epochs=2, --epochs=3)")):
        load_config(default, ["epochs=2", "--epochs", "3"], once=True)
    with pytest.raises(ConfigError, match="config key trainer.seed is given twice"):
        load_config(default, ["trainer.seed=1", "trainer.seed=2"], once=True)
    assert load_config(default, ["epochs=2", "epochs=3"]).epochs == 3.0
    assert load_config(default, ["epochs=2", "seed=4"], once=True).seed == 4  # different keys: fine
