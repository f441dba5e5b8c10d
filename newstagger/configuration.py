"""NewsTaggerConfig: the config.json of a saved model (architecture, labels, thresholds, paragraph limits).

Its own module, apart from the torch model, so that transformers' AutoConfig can learn the "newstagger"
model type without importing torch (see newstagger.hf_auto).
"""

from __future__ import annotations

from typing import Sequence

from transformers.configuration_utils import PretrainedConfig
from transformers.models.auto.configuration_auto import AutoConfig

TOPIC_POOLING = ("top2", "attention", "mean")


class NewsTaggerConfig(PretrainedConfig):
    """Architecture, labels and thresholds of a saved model (config.json). Runtime knobs (micro-batch,
    device, threads) belong to the Predictor, not here."""

    model_type = "newstagger"

    def __init__(
        self,
        labels: Sequence[str] = ("diplomacy", "sanctions", "press_freedom"),
        encoder: dict | None = None,
        topic_thresholds: dict | None = None,
        boilerplate_threshold: float = 0.5,
        boilerplate_transition_penalty: float = 0.0,
        max_paragraph_tokens: int = 256,
        max_positions: int = 64,
        context_layers: int = 1,
        context_heads: int = 4,
        dropout: float = 0.1,
        topic_pooling: str = "top2",
        relation_features: bool = True,
        boilerplate_loss_weight: float = 1.0,
        topic_loss_weight: float = 1.0,
        boilerplate_pos_weight: float = 1.0,
        topic_pos_weight: float = 1.0,
        **kwargs,
    ):
        kwargs.pop("encoder_micro_batch", None)  # a runtime knob in folders saved by version 1
        self.labels = list(labels)
        self.encoder = dict(encoder or {"model_type": "bert"})  # the base encoder's own config.json
        self.topic_thresholds = {label: 0.5 for label in self.labels}
        self.topic_thresholds.update(topic_thresholds or {})
        self.boilerplate_threshold = boilerplate_threshold
        self.boilerplate_transition_penalty = boilerplate_transition_penalty  # newstagger.decoding; 0: threshold only
        self.max_paragraph_tokens = max_paragraph_tokens
        self.max_positions = max_positions
        self.context_layers = context_layers
        self.context_heads = context_heads
        self.dropout = dropout
        if topic_pooling not in TOPIC_POOLING:
            raise ValueError(f"topic_pooling: {topic_pooling!r} is not one of {', '.join(TOPIC_POOLING)}")
        self.topic_pooling = topic_pooling
        self.relation_features = relation_features
        self.boilerplate_loss_weight = boilerplate_loss_weight
        self.topic_loss_weight = topic_loss_weight
        self.boilerplate_pos_weight = boilerplate_pos_weight
        self.topic_pos_weight = topic_pos_weight
        kwargs.setdefault("id2label", dict(enumerate(self.labels)))
        kwargs.setdefault("label2id", {label: i for i, label in enumerate(self.labels)})
        super().__init__(**kwargs)

    def encoder_config(self) -> PretrainedConfig:
        values = dict(self.encoder)
        return AutoConfig.for_model(values.pop("model_type"), **values)


AutoConfig.register("newstagger", NewsTaggerConfig, exist_ok=True)
