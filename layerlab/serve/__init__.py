"""``layerlab serve``: a local web page that explores the layer family, and its JSON API.

:mod:`layerlab.serve.api` answers the page's questions from layerlab's one engine (pure functions,
query parameters in, JSON out); :mod:`layerlab.serve.server` serves the API and the page's own
asset files on 127.0.0.1 (standard library only). ``docs/serve.md`` documents both.
"""
