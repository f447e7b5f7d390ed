"""Tiny random-init checkpoints of the VLM families transformers ships natively, built offline.

Each family's folder is what a user would bring: the stock model class from a config, a byte-level BPE tokenizer
trained on the test corpus with the family's special tokens, a chat template in the family's format, and the stock
processor (image-only where torchvision is missing, as `model.loading.image_only` loads it) saved beside the weights.
Sizes are the smallest that keep each architecture's shape rules: 64-wide text models of one layer, 32-wide vision
towers of one or two layers, images resized to 32-64 pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_rl_assets.model.tiny_model import SPECIAL_TOKENS

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
    return {
        **TEXT,
        "vocab_size": vocab,
        "eos_token_id": ids(eos),
        "pad_token_id": ids(pad),
        "bos_token_id": None,
        **extra,
    }


def _qwen_vl_config(model_type: str, patch: int, vision: dict[str, Any], mrope: list[int], **text: Any):
    from transformers import AutoConfig

    def config(ids: Callable[[str], int], vocab: int) -> Any:
        rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": mrope}
        return AutoConfig.for_model(
            model_type,
            text_config=_text(ids, vocab, "<|im_end|>", "<|endoftext|>", rope_parameters=rope, **text),
            vision_config={
                "patch_size": patch,
                "spatial_merge_size": 2,
                "out_hidden_size": TEXT["hidden_size"],
                **vision,
            },
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

        from vlm_rl_assets.model.loading import image_only

        side = 2 * 2 * patch  # 2 x 2 merged patches: 4 image tokens
        image = Qwen2VLImageProcessorPil(
            size={"shortest_edge": side * side, "longest_edge": side * side}, patch_size=patch
        )
        return image_only(getattr(transformers, processor_class))(image, tokenizer, chat_template=chat_template)

    return processor


QWEN_TOKENS = SPECIAL_TOKENS  # the Qwen-VL families share the embedded model's special tokens
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
        {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "fullatt_block_indexes": [0],
            "window_size": 56,
        },
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
        {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        [4, 2, 2],
    ),
    _qwen_vl_processor("Qwen3VLProcessor", 16),
)


PINPOINTS = [[32, 32], [32, 64], [64, 32]]  # LLaVA-OneVision's tile layouts, in pixels
TOWER = {"model_type": "siglip_vision_model", **VISION, "image_size": 32, "patch_size": 8}  # 4 x 4 patches


def _config(
    model_type: str, text_type: str, eos: str, pad: str, vision: dict[str, Any], settings: dict[str, Any], **tokens: str
):
    """A config with `settings`, and `tokens` (config field -> token) as ids in the tokenizer."""
    from transformers import AutoConfig

    def config(ids: Callable[[str], int], vocab: int) -> Any:
        text = {"model_type": text_type, **_text(ids, vocab, eos, pad)}
        return AutoConfig.for_model(
            model_type, text_config=text, vision_config=vision, **settings, **{key: ids(t) for key, t in tokens.items()}
        )

    return config


def _processor(processor_class: str, image_processor: str, image: dict[str, Any], **settings: Any):
    """`image_processor`: "module.Class" under transformers.models (transformers' top level hands out a stand-in
    demanding torchvision for some PIL image processors that do not need it)."""

    def processor(tokenizer: Any, chat_template: str) -> Any:
        import importlib

        import transformers

        from vlm_rl_assets.model.loading import image_only

        module, name = image_processor.rsplit(".", 1)
        images = getattr(importlib.import_module(f"transformers.models.{module}"), name)(**image)
        stock = getattr(transformers, processor_class)
        return image_only(stock)(image_processor=images, tokenizer=tokenizer, chat_template=chat_template, **settings)

    return processor


IDEFICS3 = Family(  # SmolVLM's architecture; one 32-pixel image of 4 x 4 patches, pixel-shuffled to 4 tokens
    "idefics3",
    (
        "<|end_of_text|>",
        "<|begin_of_text|>",
        "<fake_token_around_image>",
        "<image>",
        "<end_of_utterance>",
        "<global-img>",
    ),
    "<end_of_utterance>",
    "<|end_of_text|>",
    IDEFICS3_CHAT,
    _config(
        "idefics3",
        "llama",
        "<end_of_utterance>",
        "<|end_of_text|>",
        {**VISION, "image_size": 32, "patch_size": 8},
        {"scale_factor": 2},
        image_token_id="<image>",
    ),
    _processor(
        "Idefics3Processor",
        "idefics3.image_processing_pil_idefics3.Idefics3ImageProcessorPil",
        {"do_image_splitting": False, "size": {"longest_edge": 32}, "max_image_size": {"longest_edge": 32}},
        image_seq_len=4,
    ),
)
LLAVA_ONEVISION = Family(  # anyres tiling: a base view plus tiles, with a newline token after each row of features
    "llava_onevision",
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
    "<|im_end|>",
    "<|endoftext|>",
    chatml("<image>\n"),
    _config(
        "llava_onevision",
        "qwen2",
        "<|im_end|>",
        "<|endoftext|>",
        TOWER,
        {"image_grid_pinpoints": PINPOINTS, "vision_feature_select_strategy": "full"},
        image_token_index="<image>",
        video_token_index="<video>",
    ),
    _processor(
        "LlavaOnevisionProcessor",
        "llava_onevision.image_processing_pil_llava_onevision.LlavaOnevisionImageProcessorPil",
        {
            "size": {"height": 32, "width": 32},
            "crop_size": {"height": 32, "width": 32},
            "image_grid_pinpoints": PINPOINTS,
        },
        num_image_tokens=16,
        vision_feature_select_strategy="full",
    ),
)
GEMMA3 = Family(  # a fixed number of soft tokens per image between <start_of_image> and <end_of_image>
    "gemma3",
    (
        "<pad>",
        "<eos>",
        "<bos>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ),
    "<end_of_turn>",
    "<pad>",
    GEMMA3_CHAT,
    _config(
        "gemma3",
        "gemma3_text",
        "<end_of_turn>",
        "<pad>",
        TOWER,
        {"mm_tokens_per_image": 4},
        image_token_index="<image_soft_token>",
        boi_token_index="<start_of_image>",
        eoi_token_index="<end_of_image>",
    ),
    _processor(
        "Gemma3Processor",
        "gemma3.image_processing_pil_gemma3.Gemma3ImageProcessorPil",
        {"size": {"height": 32, "width": 32}},
        image_seq_length=4,
    ),
    named_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    bos="<bos>",
)
INTERNVL = Family(  # the HF-native InternVL (-hf checkpoints): <img>, pixel-shuffled <IMG_CONTEXT> tokens, </img>
    "internvl",
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
    "<|im_end|>",
    "<|endoftext|>",
    chatml("<IMG_CONTEXT>\n"),
    _config(
        "internvl",
        "qwen2",
        "<|im_end|>",
        "<|endoftext|>",
        {**VISION, "image_size": [32, 32], "patch_size": [8, 8]},
        {"image_seq_length": 4},
        image_token_id="<IMG_CONTEXT>",
    ),
    _processor(
        "InternVLProcessor",
        "got_ocr2.image_processing_pil_got_ocr2.GotOcr2ImageProcessorPil",
        {"size": {"height": 32, "width": 32}, "crop_to_patches": False},
        image_seq_length=4,
    ),
    named_tokens={
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    },
)
MISTRAL3 = Family(  # Pixtral tokens: rows of [IMG] ending in [IMG_BREAK], the last in [IMG_END]
    "mistral3",
    ("<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"),
    "</s>",
    "<pad>",
    MISTRAL3_CHAT,
    _config(
        "mistral3",
        "mistral",
        "</s>",
        "<pad>",
        {"model_type": "pixtral", **VISION, "head_dim": 16, "image_size": 32, "patch_size": 8},
        {"spatial_merge_size": 2},
        image_token_index="[IMG]",
    ),
    _processor(
        "PixtralProcessor",
        "pixtral.image_processing_pil_pixtral.PixtralImageProcessorPil",
        {"size": {"longest_edge": 32}, "patch_size": {"height": 8, "width": 8}},
        patch_size=8,
        spatial_merge_size=2,
    ),
    bos="<s>",
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
