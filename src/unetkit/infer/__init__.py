"""A trained model at work, in PyTorch: checkpoints and every reader of them (checkpoint), compact
storage (quantize), the shipped weights (builtin), logits from images (inference), the Segmenter and
its mask files (predict) and scoring on a dataset (evaluation)."""
