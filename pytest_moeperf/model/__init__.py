"""The model under test: cases, presets, loading with random weights, tokenizer, context, routing."""
