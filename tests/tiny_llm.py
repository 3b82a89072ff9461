"""A tiny random-weight Qwen2-style chat model with a byte-level BPE tokenizer built in memory.

Tests and ``bench/planner.py`` need a real transformers model and a real tokenizer (the
grammar library must see a real byte-level vocabulary) without downloading anything:
the tokenizer is trained here on the planner's own prompts and command examples, and
the model is a Qwen2 config with tiny sizes and random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.planners.messages import build_messages
from core.prompting import system_prompt
from core.rules import load_rules

#: Qwen's ChatML template (the shape of Qwen2.5-Instruct's, without tools).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LABELS = ["Background", "Face", "Hair", "Upper-clothes", "Pants", "Selection"]
REQUESTS = [
    "put her on a beach and make the shirt white", "把背景换成蓝天白云", "remove the hat",
    "make the photo brighter", "blur the background a little", "give her a bigger smile",
    "turn it into a watercolour painting", "make the pants navy", "把头发染成红色", "让照片更暖一些",
]


def _corpus() -> list[str]:
    rules = load_rules()
    texts = [system_prompt(LABELS, lang, rules) for lang in ("en", "zh")]
    for request in REQUESTS:
        texts += [m["content"] for m in build_messages(request, LABELS)]
    examples = [
        [{"command": "change", "paras": [["Background", "Upper-clothes"], "blue sky, white T-shirt"]}],
        [{"command": "recolor", "paras": [["Pants"], "navy"]}, {"command": "face", "paras": ["bigger smile"]}],
        [{"command": "adjust", "paras": ["brightness", 0.3, []]}, {"command": "blur", "paras": [["Background"], 0.5]}],
        [{"command": "remove", "paras": [["Hair"]]}, {"command": "style", "paras": ["watercolour painting"]}],
        [{"command": "instruct", "paras": ["make it snow"]}, {"command": "advice", "paras": ["select a region first"]}],
    ]
    texts += [json.dumps(e, ensure_ascii=False) for e in examples]
    texts += [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in examples]
    return texts * 3


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with ChatML special tokens and chat template, trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, chat_template=CHAT_TEMPLATE, padding_side="left")


def build_model(vocab_size: int, *, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                intermediate: int = 64, seed: int = 0, init_std: float = 0.02):
    """A Qwen2 causal LM with random weights and the given sizes.

    ``init_std`` larger than the usual 0.02 gives embeddings (tied to the output head, which LoRA does not
    train) large enough for sharp next-token distributions, so a LoRA can memorise text in a few steps.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                         max_position_embeddings=4096, tie_word_embeddings=True, eos_token_id=None,
                         pad_token_id=None, bos_token_id=None, initializer_range=init_std)
    return Qwen2ForCausalLM(config).eval()


def save_tiny_planner(directory: Path, *, vocab_size: int = 1024, **sizes: int) -> Path:
    """Tokenizer + model saved with save_pretrained (what ``CHATEDIT_LOCAL_LLM`` points at)."""
    tokenizer = build_tokenizer(vocab_size)
    model = build_model(len(tokenizer), **sizes)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory


def save_tiny_adapter(model_dir: Path, directory: Path, *, rank: int = 4, seed: int = 1) -> Path:
    """A LoRA adapter on the attention projections with random (non-zero) B, so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False, task_type="CAUSAL_LM"))
    peft_model.save_pretrained(directory)
    return directory
