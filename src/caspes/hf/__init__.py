"""Hugging Face speech encoder-decoders (Whisper, Speech2Text) behind the model protocol of
:class:`caspes.model.S2TModel`, loaded from a local folder only.

* :mod:`caspes.hf.card` (torch-free): the config entry (``source: huggingface``) checked against
  the folder before any job runs, and the model card the workflow writes for it;
* :mod:`caspes.hf.adapter`: :class:`~caspes.hf.adapter.HFSpeechModel` (encode, teacher-forced
  decoding with every layer's cross-attention, incremental steps for the searches);
* :mod:`caspes.hf.tokenizer`: the model's tokenizer with the study's piece / prompt interface;
* :mod:`caspes.hf.features`: the model's own feature extractor over a manifest;
* :mod:`caspes.hf.loading`: one loader for a checkpoint of ours or a model card.
"""
