"""Frozen sentence embeddings + cheap probes against a LoRA fine-tuned LLM, scored on the same splits.

Library modules hold the models, sources and metrics; news_probes.stages holds one thin module per DVC stage
(read inputs, call the library, write outputs); news_probes.cli is the `news-probes` command."""
