"""Analysis: correlations of cross-attention with saliency, bootstrap intervals and
paired tests, word timestamps from every map. In: the stores of stages 4 and 5; out: TSV tables
per utterance and summary.
"""
