"""Tiny random-init checkpoints of the VLM families transformers ships natively, built offline.

Each family's folder is what a user would bring: the stock model class from a config, a byte-level BPE tokenizer
trained on the test corpus with the family's special tokens, a chat template in the family's format, and the stock
processor (image-only where torchvision is missing, as `tiny_model.image_only` loads it) saved beside the weights.
Sizes are the smallest that keep each architecture's shape rules: 64-wide text models of one layer, 32-wide vision
towers of one or two layers, images resized to 32-64 pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXT = {  # one decoder layer, head_dim 16
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 1024,
}
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}

# The Qwen chat layout (ChatML) with the image placeholder each family's processor expands.
CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- IMAGE }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def chatml(image: str, system: str | None = None) -> str:
    template = CHATML.replace("IMAGE", repr(image))
    if system is None:
        return template
    default = f"{{%- if messages[0]['role'] != 'system' %}}{{{{- '<|im_start|>system\\n{system}<|im_end|>\\n' }}}}{{%- endif %}}"
    return default + template


IDEFICS3_CHAT = (  # Idefics3 / SmolVLM: "User:<image>question<end_of_utterance>\nAssistant: answer"
    "{{- '<|begin_of_text|>' }}"
    "{%- for message in messages %}{{- message['role'] | capitalize }}"
    "{%- if message['content'][0]['type'] == 'image' %}{{- ':' }}{%- else %}{{- ': ' }}{%- endif %}"
    "{%- for line in message['content'] %}"
    "{%- if line['type'] == 'text' %}{{- line['text'] }}{%- elif line['type'] == 'image' %}{{- '<image>' }}{%- endif %}"
    "{%- endfor %}{{- '<end_of_utterance>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}"
)
GEMMA3_CHAT = (  # Gemma 3: bos, "model" for the assistant, <start_of_image> where an image goes
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{- '<start_of_turn>' + role + '\\n' }}"
    "{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' %}{{- '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] | trim }}{%- endif %}"
    "{%- endfor %}{{- '<end_of_turn>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)
MISTRAL3_CHAT = (  # Mistral 3: [INST]...[/INST]answer</s>, no generation prompt
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{- '[INST]' }}"
    "{%- for block in message['content'] %}"
    "{%- if block['type'] == 'image' %}{{- '[IMG]' }}{%- elif block['type'] == 'text' %}{{- block['text'] }}{%- endif %}"
    "{%- endfor %}{{- '[/INST]' }}"
    "{%- else %}{%- for block in message['content'] %}{{- block['text'] }}{%- endfor %}{{- eos_token }}{%- endif %}"
    "{%- endfor %}"
)


@dataclass(frozen=True)
class Family:
    """One model family: its tokens and chat format, and how to build its model config and processor."""

    name: str
    special_tokens: tuple[str, ...]  # ids 0.. in this order
    eos: str
    pad: str
    chat_template: str
    config: Callable[[Callable[[str], int], int], Any]  # (token id of, vocab size) -> the model config
    processor: Callable[[Any, str], Any]  # (tokenizer, chat template) -> the processor
    named_tokens: dict[str, str] = field(default_factory=dict)  # tokenizer attributes the processor reads
    bos: str | None = None


def _text(ids: Callable[[str], int], vocab: int, eos: str, pad: str, **extra: Any) -> dict[str, Any]:
    return {**TEXT, "vocab_size": vocab, "eos_token_id": ids(eos), "pad_token_id": ids(pad), "bos_token_id": None, **extra}


def _qwen_vl_config(model_type: str, patch: int, vision: dict[str, Any], mrope: list[int], **text: Any):
    from transformers import AutoConfig

    def config(ids: Callable[[str], int], vocab: int) -> Any:
        rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}
        return AutoConfig.for_model(
            model_type,
            text_config=_text(ids, vocab, "<|im_end|>", "<|endoftext|>", rope_parameters=rope, **text),
            vision_config={"patch_size": patch, "spatial_merge_size": 2, "out_hidden_size": TEXT["hidden_size"], **vision},
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )

    return config


def _qwen_vl_processor(processor_class: str, patch: int) -> Callable[[Any, str], Any]:
    def processor(tokenizer: Any, chat_template: str) -> Any:
        import transformers
        from transformers import Qwen2VLImageProcessorPil

        from vlm_rl_assets.model.tiny_model import image_only

        side = 2 * 2 * patch  # 2 x 2 merged patches: 4 image tokens
        image = Qwen2VLImageProcessorPil(size={"shortest_edge": side * side, "longest_edge": side * side}, patch_size=patch)
        return image_only(getattr(transformers, processor_class))(image, tokenizer, chat_template=chat_template)

    return processor


QWEN_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"

QWEN2_5_VL = Family(
    "qwen2_5_vl",
    QWEN_TOKENS,
    "<|im_end|>",
    "<|endoftext|>",
    chatml(QWEN_IMAGE, system="You are a helpful assistant."),
    _qwen_vl_config(
        "qwen2_5_vl",
        14,
        {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "fullatt_block_indexes": [0], "window_size": 56},
        [2, 3, 3],
    ),
    _qwen_vl_processor("Qwen2_5_VLProcessor", 14),
)
QWEN3_VL = Family(
    "qwen3_vl",
    QWEN_TOKENS,
    "<|im_end|>",
    "<|endoftext|>",
    chatml(QWEN_IMAGE),
    _qwen_vl_config(
        "qwen3_vl",
        16,
        {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "num_position_embeddings": 16,
         "deepstack_visual_indexes": [0]},
        [4, 2, 2],
    ),
    _qwen_vl_processor("Qwen3VLProcessor", 16),
)


def build_family(family: Family, out_dir: Path, corpus: list[str], seed: int = 0) -> Path:
    """A random-init checkpoint of `family` in `out_dir`: model, tokenizer, chat template and processor."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from vlm_rl_assets.model.tiny_model import TinyVLMSpec, train_tokenizer

    named = family.named_tokens or None
    tokenizer = train_tokenizer(corpus, TinyVLMSpec(), family.special_tokens, family.eos, family.pad, named)
    if family.bos is not None:
        tokenizer.bos_token = family.bos
    config = family.config(tokenizer.convert_tokens_to_ids, len(tokenizer))
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    eos, pad = tokenizer.convert_tokens_to_ids([family.eos, family.pad])
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(out_dir)
    family.processor(tokenizer, family.chat_template).save_pretrained(out_dir)
    return out_dir
