"""The generated model card (README.md in every saved model folder)."""

from __future__ import annotations

from pathlib import Path

from .metrics import format_report


def write_model_card(folder: Path, model_config, training_config, reports: dict, sizes: dict, state=None) -> None:
    labels = ", ".join(f"`{label}`" for label in model_config.labels)
    thresholds = ", ".join(f"{k} {v:.2f}" for k, v in model_config.topic_thresholds.items())
    epochs = f"{state.epoch:.1f}" if state is not None and state.epoch is not None else "?"
    best = f"{state.best_metric:.3f}" if state is not None and state.best_metric is not None else "?"
    tables = "\n\n".join(f"### {split}\n\n```\n{format_report(report)}\n```" for split, report in reports.items())
    text = f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [newstagger, news, multi-label, boilerplate-detection]
base_model: {training_config.base_model}
---

# newstagger model

Tags news articles with topics ({labels}, multi-label) and flags each paragraph that is boilerplate
(appeals, newsletter prompts, "Read more" links, credits, cookie text...) rather than reporting.
Topics are computed from content paragraphs only, so an outlet's appeal about press freedom does not
make a diplomacy story a press-freedom story.

## Use

```python
from newstagger import Predictor
tagger = Predictor.from_pretrained("{folder.name}")
result = tagger.predict(open("article.txt").read())
print(result.topics, [i for i, flag in enumerate(result.boilerplate) if flag])
```

or `python predict.py --model {folder.name} articles.jsonl --output tags.jsonl`.

## Model

- Encoder: `{training_config.base_model}` ({model_config.encoder.get('num_hidden_layers')} layers, hidden
  {model_config.encoder.get('hidden_size')}), each paragraph and the title encoded on its own and mean-pooled;
  paragraphs over {model_config.max_paragraph_tokens} tokens are split into chunks whose vectors are pooled.
- Context layer: {model_config.context_layers} transformer layer(s) over the article's paragraph vectors with
  position-from-start and position-from-end embeddings; boilerplate head on top.
- Topic head: per-label attention pooling over paragraph vectors, weighted by each paragraph's predicted
  content probability.
- Thresholds (tuned on validation to maximise F1): topics {thresholds}; boilerplate
  {model_config.boilerplate_threshold:.2f}.

## Training

Data: {sizes.get('train')} train / {sizes.get('validation')} validation / {sizes.get('test')} test articles
(`{training_config.train_file}`); {epochs} epochs, batch {training_config.batch_size} articles,
learning rate {training_config.learning_rate} (encoder) / {training_config.head_learning_rate} (heads),
boilerplate augmentation {'on' if training_config.augment else 'off'}, seed {training_config.seed};
best validation score (mean of topic macro-F1 and boilerplate F1 at 0.5) {best}.

## Evaluation

{tables}

## Limitations

Trained on a small hand-written English corpus; outlets and topics far from it will score lower.
Thresholds were tuned on the validation split, whose outlets differ from the training outlets.
"""
    (folder / "README.md").write_text(text, encoding="utf-8")
