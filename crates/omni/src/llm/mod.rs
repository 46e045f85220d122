//! Stage 4, the LLM backbone: LLaMA-family decoders from GGUF, tokenizer, chat template,
//! KV cache and sampling.
