"""newstagger: topic tagging and boilerplate flagging for news articles.

    from newstagger import Predictor
    Predictor.from_pretrained("runs/default").predict(text)
"""

__version__ = "0.1.0"
__all__ = ["Article", "ArticleError", "DataError", "Limits", "Predictor", "TaggingResult", "load_articles"]

_HOMES = {"Article": "data", "DataError": "data", "load_articles": "data",
          "ArticleError": "predictor", "Limits": "predictor", "Predictor": "predictor", "TaggingResult": "predictor"}


from . import hf_auto

hf_auto.install()  # AutoConfig/AutoModel.from_pretrained(folder) work once transformers loads; no torch now


def __getattr__(name):
    # Lazy, so `python -m newstagger.data` and light imports don't pull in torch.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(name)
