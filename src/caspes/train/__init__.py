"""Training: settings, batches, SpecAugment, losses and the loop with resume. In:
fbank archives, tokenizer, model dimensions; out: checkpoints and a history per stage.
"""
