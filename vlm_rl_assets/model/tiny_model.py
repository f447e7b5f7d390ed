"""The embedded default VLM: a tiny Qwen2-VL built offline from the project's own task texts.

Nothing here reaches a model hub: the tokenizer is trained on the corpus, the weights are random.
The checkpoint is a stock Qwen2-VL one (stock class names throughout), so the same directory loads
with `AutoProcessor`/`AutoModelForImageTextToText` or vLLM on machines that have torchvision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlm_rl_assets.model.loading import image_only, torchvision_available

if TYPE_CHECKING:
    from transformers import ProcessorMixin, Qwen2Tokenizer, Qwen2VLConfig

# Qwen2-VL's special tokens, in Qwen's order; they take ids 0.. so the config's token ids are small.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# Qwen2-VL layout without the default system prompt: fewer tokens per sample for a tiny model.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content %}{{- content['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinyVLMSpec:
    """Sizes of the tiny VLM. Defaults: a ~0.9M-parameter model (0.92M, bench/RESULTS.md) that learns the
    embedded tasks on a CPU in minutes; one with hidden size 256 (3.5M) learned nothing in 9 minutes and was 2-3x
    slower per step."""

    max_vocab_size: int = 1024  # BPE upper bound; a small corpus stops well below it
    min_frequency: int = 2  # a merge must occur twice, so single prompts don't become one token
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 4
    num_heads: int = 4  # head_dim = hidden_size / num_heads = 32
    num_kv_heads: int = 2
    mrope_section: tuple[int, int, int] = (4, 6, 6)  # must sum to head_dim / 2
    max_position_embeddings: int = 2048
    vision_depth: int = 2
    vision_embed_dim: int = 64
    vision_num_heads: int = 4
    patch_size: int = 14
    merge_size: int = 2
    # smart_resize bounds: 56x56 -> 4 image tokens at least, 112x112 -> 16 tokens at most.
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112


def _build_processor(spec: TinyVLMSpec, tokenizer: Qwen2Tokenizer) -> ProcessorMixin:
    """The processor of a new checkpoint: stock, with a video processor resizing as images do, where torchvision
    exists (the stock class requires one); the image-only subclass elsewhere, saving those same video settings
    (what transformers itself infers for legacy Qwen2-VL checkpoints)."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    # Pass `size`, not min/max_pixels: those mutate the class-level default dict in place.
    resize = {
        "size": {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
        "patch_size": spec.patch_size,
        "merge_size": spec.merge_size,
    }
    parts = {"image_processor": Qwen2VLImageProcessorPil(**resize), "tokenizer": tokenizer}
    if torchvision_available():
        from transformers import Qwen2VLVideoProcessor

        parts["video_processor"] = Qwen2VLVideoProcessor(**resize)
    processor = image_only(Qwen2VLProcessor)(**parts, chat_template=CHAT_TEMPLATE)
    if not torchvision_available():
        image = {k: v for k, v in processor.image_processor.to_dict().items() if k != "image_processor_type"}
        processor.video_settings = {**image, "video_processor_type": "Qwen2VLVideoProcessor"}
    return processor


def train_tokenizer(
    corpus: Iterable[str],
    spec: TinyVLMSpec,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    eos_token: str = EOS_TOKEN,
    pad_token: str = PAD_TOKEN,
    named_tokens: dict[str, str] | None = None,
) -> Qwen2Tokenizer:
    """Byte-level BPE on `corpus` with `special_tokens` first (ids 0..), wrapped in transformers' `Qwen2Tokenizer`;
    `named_tokens` (e.g. {"image_token": "<image>"}) become attributes some processors read (`tokenizer.image_token`).

    The trainer uses exactly the normalizer and pre-tokenizer `Qwen2Tokenizer` installs when it loads,
    so the merges learned here produce the same ids whichever loader reads them back.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.max_vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    trained = json.loads(bpe.to_str())["model"]  # tokenizers has no public getter for the merges
    return Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(pair) for pair in trained["merges"]],
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=None,
        bos_token=None,
        extra_special_tokens=named_tokens or [t for t in special_tokens if t not in (eos_token, pad_token)],
        model_max_length=spec.max_position_embeddings,
    )


def model_sizes(spec: TinyVLMSpec, vocab_size: int) -> dict[str, dict[str, object]]:
    """The text and vision sizes of the config (what the memory plan reads before anything is built)."""
    return {
        "text_config": {
            "vocab_size": vocab_size,
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": spec.max_position_embeddings,
            "max_window_layers": spec.num_layers,
            "tie_word_embeddings": True,
        },
        "vision_config": {
            "depth": spec.vision_depth,
            "embed_dim": spec.vision_embed_dim,
            "num_heads": spec.vision_num_heads,
            # The merger projects into the text model: it must equal the text hidden size.
            "hidden_size": spec.hidden_size,
            "patch_size": spec.patch_size,
            "spatial_merge_size": spec.merge_size,
        },
    }


def _model_config(spec: TinyVLMSpec, tokenizer: Qwen2Tokenizer) -> Qwen2VLConfig:
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    sizes = model_sizes(spec, len(tokenizer))
    return Qwen2VLConfig(
        text_config={
            **sizes["text_config"],
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": list(spec.mrope_section),
            },
            "bos_token_id": None,
            "eos_token_id": ids[EOS_TOKEN],
            "pad_token_id": ids[PAD_TOKEN],
        },
        vision_config=sizes["vision_config"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_tiny_vlm(out_dir: Path, corpus: Iterable[str], *, seed: int = 0, spec: TinyVLMSpec = TinyVLMSpec()) -> Path:
    """Train a tokenizer on `corpus`, build a randomly initialised Qwen2-VL and save both to `out_dir`."""
    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus, spec)
    processor = _build_processor(spec, tokenizer)
    config = _model_config(spec, tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=None, eos_token_id=config.text_config.eos_token_id, pad_token_id=config.text_config.pad_token_id
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
