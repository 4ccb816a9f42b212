"""One module per DVC stage of dvc.yaml: each reads its inputs, calls the library and writes its outputs; no stage
imports another."""
