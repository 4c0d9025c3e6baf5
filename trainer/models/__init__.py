"""The models the built-in trainer builds: ``build`` picks one by name (``names``): Tiller's own
MLP, a timm network (``timm_model``, weights from ``pretrained``) or the IMDB text model
(``text_model``); each is a ``classifier.Classifier``.
"""
