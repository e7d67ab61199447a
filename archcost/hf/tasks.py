"""What a Hugging Face model trains on: its head, its example inputs and its sequence limit.

A task is chosen from the config: the first of ``architectures`` that ``transformers`` knows
(what the published checkpoint was trained as), else by ``model_type`` in this order:
speech-to-text (Whisper), encoder-decoder LM (T5, BART), masked LM for encoders that are not
decoders (BERT, RoBERTa), causal LM, image classification, the bare model (``AutoModel``).

Inputs are what the head's own loss needs, so the loss is the model's (``output.loss``):

- causal and masked LM: token ids ``(B, S)`` and labels equal to them (the causal LM shifts them;
  NB: a masked LM is charged a loss over every position, as a 15% mask costs the same matmuls);
- encoder-decoder LM: ids ``(B, S)`` in, decoder ids and labels ``(B, S)``;
- speech-to-text: log-mel features ``(B, num_mel_bins, 2 * max_source_positions)`` (Whisper's
  30 s window, the only length it accepts), decoder ids and labels ``(B, S)``;
- image and sequence classification: pixel values ``(B, num_channels, image_size, image_size)``
  (224 when the config has no ``image_size``) or ids, and one class label per example;
- the bare model: every input its ``forward`` names among ids, decoder ids, pixel values and
  features, with ``return_loss=True`` where it takes it (CLIP's contrastive loss), else the mean
  of its output as the loss.

``S`` is ``--seq-len``; image models have no sequence and ignore it. ``S`` is refused past the
positions the model has (``max_position_embeddings``, ``n_positions``; Whisper's decoder
``max_target_positions``; RoBERTa-style embeddings offset theirs by ``pad_token_id + 1``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["Task", "choose_task", "example_inputs", "sequence_limit"]

# (task kind, modeling_auto mapping), in the order a config without ``architectures`` tries them
_MAPPINGS = (
    ("speech-seq2seq", "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES"),
    ("seq2seq-lm", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
    ("masked-lm", "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
    ("causal-lm", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    ("image-classification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES"),
    ("sequence-classification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
    ("base", "MODEL_MAPPING_NAMES"),
)
# position ids start at pad_token_id + 1 (RoBERTa's create_position_ids_from_input_ids)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text",
                     "roberta-prelayernorm", "xmod", "longformer"}


@dataclass(frozen=True)
class Task:
    kind: str  # one of the kinds of _MAPPINGS
    model_class: type  # the transformers class built from the config

    @property
    def name(self) -> str:
        return self.model_class.__name__


def _names(value) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def choose_task(config, transformers) -> Task | None:
    """The head a config trains; None when no mapping of this transformers knows its type."""
    from transformers.models.auto import modeling_auto

    mappings = [(kind, getattr(modeling_auto, attr, {})) for kind, attr in _MAPPINGS]
    for arch in getattr(config, "architectures", None) or []:
        for kind, mapping in mappings:
            if any(arch in _names(v) for v in mapping.values()) and hasattr(transformers, arch):
                return Task(kind, getattr(transformers, arch))
    mtype = config.model_type
    for kind, mapping in mappings:
        if mtype not in mapping:
            continue
        seq2seq = kind in ("speech-seq2seq", "seq2seq-lm")
        if seq2seq and not getattr(config, "is_encoder_decoder", False):
            continue
        if kind == "masked-lm" and getattr(config, "is_decoder", False):
            continue
        name = _names(mapping[mtype])[0]
        if hasattr(transformers, name):
            return Task(kind, getattr(transformers, name))
    return None


def sequence_limit(task: Task, config) -> tuple[str, int] | None:
    """(field, longest sequence) the model's positions allow; None when unbounded or no text."""
    if task.kind == "image-classification":
        return None
    if task.kind == "speech-seq2seq":
        return "max_target_positions", int(config.max_target_positions)
    text = config.get_text_config()
    for field in ("max_position_embeddings", "n_positions"):
        value = getattr(text, field, None)
        if isinstance(value, int) and not isinstance(value, bool):
            if text.model_type in _OFFSET_POSITIONS:
                value -= (getattr(text, "pad_token_id", None) or 0) + 1
            return field, value
    return None


def _image_size(config) -> tuple[int, int, int]:
    """(channels, height, width) of the config's images; 224 square when it does not say."""
    vision = getattr(config, "vision_config", None) or config
    size = getattr(vision, "image_size", None) or 224
    h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
    return int(getattr(vision, "num_channels", 3) or 3), int(h), int(w)


def example_inputs(task: Task, config, batch_size: int, seq_len: int) -> dict[str, Any]:
    """Keyword inputs of one training step (created under the caller's device/fake mode)."""
    import torch

    b, s = batch_size, seq_len
    text = config.get_text_config()

    def ids(length: int = s):
        return torch.randint(0, int(text.vocab_size), (b, length))

    def pixels():
        c, h, w = _image_size(config)
        return torch.randn(b, c, h, w)

    kind = task.kind
    if kind in ("causal-lm", "masked-lm"):
        tokens = ids()
        return {"input_ids": tokens, "labels": tokens}
    if kind == "seq2seq-lm":
        target = ids()
        return {"input_ids": ids(), "decoder_input_ids": target, "labels": target}
    if kind == "speech-seq2seq":
        target = ids()
        frames = 2 * int(config.max_source_positions)
        return {"input_features": torch.randn(b, int(config.num_mel_bins), frames),
                "decoder_input_ids": target, "labels": target}
    if kind in ("image-classification", "sequence-classification"):
        labels = torch.randint(0, max(1, int(config.num_labels)), (b,))
        first = {"pixel_values": pixels()} if kind == "image-classification" else \
            {"input_ids": ids()}
        return {**first, "labels": labels}
    params = inspect.signature(task.model_class.forward).parameters
    out: dict[str, Any] = {}
    if "input_ids" in params:
        out["input_ids"] = ids()
    if "decoder_input_ids" in params:
        out["decoder_input_ids"] = ids()
    if "pixel_values" in params:
        out["pixel_values"] = pixels()
    if "input_features" in params and hasattr(config, "num_mel_bins"):
        out["input_features"] = torch.randn(b, int(config.num_mel_bins),
                                            2 * int(config.max_source_positions))
    if "return_loss" in params:
        out["return_loss"] = True
    return out
