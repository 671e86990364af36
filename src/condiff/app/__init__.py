"""`condiff app`: a local web app (Gradio) for the three things condiff models do.

`models` finds the models and runs them with the same library calls as the CLI; it does not import
Gradio. `ui` builds the page and imports Gradio, which is the optional extra `condiff[app]`.
"""
